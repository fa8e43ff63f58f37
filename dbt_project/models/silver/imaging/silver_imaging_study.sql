{{ config(alias='imaging_study', meta={'dagster': {'group': 'imaging'}}) }}
-- De-identified DICOM studies: one row per derived Study Instance UID, linked to the
-- person by person_key (DICOM PatientID = MRN) and to FHIR by study_uid / accession_key.
-- Lineage: the most recently ingested instance of the study.
select
    study_uid,
    any_value(person_key) as person_key,
    bool_or(person_in_ehr) as person_in_ehr,
    any_value(accession_key) as accession_key,
    mode(modality) as modality,
    list_sort(list_distinct(list(modality))) as modalities,
    mode(body_part) as body_part,
    scrub_text(any_value(study_description), any_value(phi_values), any_value(shift_days))
        as study_description,
    (min(study_date) + any_value(shift_days) * interval 1 day)::date as study_date,
    count(distinct series_uid) as number_of_series,
    count(*) as number_of_instances,
    arg_max(batch_id, ingested_at) as batch_id,
    arg_max(source_sha256, ingested_at) as source_sha256
from {{ ref('int_dicom_instance') }}
where study_uid is not null
group by study_uid
