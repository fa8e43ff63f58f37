-- FHIR side of imaging linkage: each ImagingStudy with its radiology DiagnosticReport, from
-- the SQL-on-FHIR silver tables, which already key both like DICOM (study_uid = derived_uid
-- of the Study Instance UID, accession_key = pseudonym of the accession number). A report
-- matches its study by the ImagingStudy it references, else by accession number. The
-- report text is silver.document's (one scrubbing for both).
with studies as (
    select imaging_study_id, study_uid, accession_key, person_key, batch_id, source_sha256
    from {{ ref('silver_imaging_study_fhir') }}
),

-- Radiology reports: those that point at an ImagingStudy or carry an accession number.
reports as (
    select report_id, document_id, study_uid, accession_key, person_key, effective_date,
           conclusion, batch_id, source_sha256
    from {{ ref('silver_diagnostic_report') }}
    where study_uid is not null or accession_key is not null
),

pairs as (
    select
        coalesce(s.study_uid, r.study_uid) as study_uid,
        coalesce(s.accession_key, r.accession_key) as accession_key,
        s.imaging_study_id as fhir_imaging_study_id,
        r.report_id,
        coalesce(r.person_key, s.person_key) as person_key,
        r.effective_date as report_date,
        r.conclusion,
        r.document_id,
        coalesce(r.batch_id, s.batch_id) as batch_id,
        coalesce(r.source_sha256, s.source_sha256) as source_sha256
    from studies s
    full join reports r
        on r.study_uid = s.study_uid
        or (r.study_uid is null and r.accession_key = s.accession_key)
)

select p.* exclude (document_id), d.text
from pairs p
left join {{ ref('silver_document') }} d using (document_id)
