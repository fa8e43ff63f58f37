{{ config(alias='imaging_report', meta={'dagster': {'group': 'imaging'}}) }}
-- One row per imaging study, DICOM or FHIR side, with its radiology report: what the
-- retrieval layer embeds for imaging questions. A study is matched to FHIR by
-- study_uid, else by accession_key. has_dicom / has_report / person_in_ehr make the
-- unlinked visible (the imaging linkage asset check counts them).
-- Lineage: batch_id / source_sha256 of the report (the text's source), else of the
-- study's latest DICOM instance; study_uid and report_id are the silver keys.
with studies as (
    select * from {{ ref('silver_imaging_study') }}
),

links as (
    select * from {{ ref('int_fhir_imaging_links') }}
),

matched as (
    select
        coalesce(s.study_uid, l.study_uid) as study_uid,
        l.report_id,
        coalesce(s.person_key, l.person_key) as person_key,
        coalesce(s.accession_key, l.accession_key) as accession_key,
        s.modality,
        s.body_part,
        s.study_description,
        coalesce(s.study_date, l.report_date) as study_date,
        l.report_date,
        l.conclusion,
        l.text,
        (s.study_uid is not null) as has_dicom,
        (l.report_id is not null) as has_report,
        coalesce(s.person_in_ehr, l.person_key is not null) as person_in_ehr,
        coalesce(l.batch_id, s.batch_id) as batch_id,
        coalesce(l.source_sha256, s.source_sha256) as source_sha256
    from studies s
    full join links l
        on l.study_uid = s.study_uid
        or (l.study_uid is null and l.accession_key = s.accession_key)
)

select * from matched
-- An addendum is a second report on one study: keep the latest.
qualify row_number() over (partition by coalesce(study_uid, report_id)
                           order by report_date desc nulls last, report_id) = 1
