{{ config(alias='imaging_study_fhir') }}
-- FHIR ImagingStudy resources, from the SQL-on-FHIR view `imaging_study_fhir`. The Study
-- Instance UID and accession number are replaced exactly as the DICOM side replaces them
-- (study_uid = derived_uid, accession_key = pseudonym('accession', …)), so silver.imaging_study
-- rows join to these on study_uid / accession_key without either raw value leaving bronze.
with v as ({{ sof_base('imaging_study_fhir') }})

select
    pseudonym('ImagingStudy', resource_key) as imaging_study_id,
    derived_uid(regexp_replace(study_instance_uid, '^urn:oid:', '')) as study_uid,
    pseudonym('accession', accession_number) as accession_key,
    person_key,
    pseudonym('Encounter', encounter_key) as encounter_id,
    status,
    modality_code as modality,
    procedure_code,
    procedure_system,
    procedure_display,
    reason_code,
    reason_system,
    reason_display,
    body_site_code,
    body_site_display,
    scrub_text(cast(description as varchar), phi_values, shift_days) as description,
    {{ shifted_day('started') }} as started_date,
    {{ shifted_ts('started') }} as started_datetime,
    try_cast(number_of_series as integer) as number_of_series,
    try_cast(number_of_instances as integer) as number_of_instances,
    batch_id,
    source_sha256
from v
