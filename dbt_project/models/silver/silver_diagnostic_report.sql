{{ config(alias='diagnostic_report') }}
-- Diagnostic reports from the SQL-on-FHIR view `diagnostic_report`. Imaging reports carry
-- the study_uid of the ImagingStudy they reference and the accession_key, the two keys the
-- imaging domain links DICOM studies by. The report text itself is in silver.document.
with v as ({{ sof_base('diagnostic_report') }}),

studies as (
    select resource_key as imaging_study_key,
           derived_uid(regexp_replace(study_instance_uid, '^urn:oid:', '')) as study_uid
    from {{ source('sof', 'imaging_study_fhir') }}
)

select
    pseudonym('DiagnosticReport', v.resource_key) as report_id,
    -- The matching silver.document row, when the report has text.
    case when v.presented_form_data is not null
         then pseudonym('DiagnosticReport', v.id) end as document_id,
    s.study_uid,
    pseudonym('accession', v.accession_number) as accession_key,
    v.person_key,
    pseudonym('Encounter', v.encounter_key) as encounter_id,
    v.status,
    v.category_code,
    v.code_code as code,
    v.code_system,
    v.code_display,
    {{ shifted_day('v.effective_datetime', 'v.shift_days') }} as effective_date,
    {{ shifted_ts('v.issued', 'v.shift_days') }} as issued_datetime,
    {{ scrub_fhir_text('cast(v.conclusion as varchar)', 'v.named_values', 'v.phi_values', 'v.shift_days') }}
        as conclusion,
    v.conclusion_code,
    v.conclusion_system,
    v.conclusion_display,
    v.batch_id,
    v.source_sha256
from v
left join studies s using (imaging_study_key)
