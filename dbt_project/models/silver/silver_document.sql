{{ config(alias='document') }}
-- Clinical notes (SQL-on-FHIR view `document`, from DocumentReference) and report texts
-- (view `diagnostic_report`, its presentedForm), decoded from base64 and scrubbed: the
-- person's own identifier values are redacted, shaped identifiers (SSN, phone, e-mail,
-- ZIP, MRN) tagged, dates shifted per person.
with notes as ({{ sof_base('document') }}),

reports as ({{ sof_base('diagnostic_report') }}),

docs as (
    select 'DocumentReference' as resource_type, id, encounter_key, type_display as doc_type,
           type_code as doc_type_code, cast(date as varchar) as doc_datetime, content_type,
           attachment_data, named_values, person_key, shift_days, phi_values, batch_id,
           source_sha256
    from notes
    where attachment_data is not null
    union all
    select 'DiagnosticReport', id, encounter_key, code_display, code_code,
           cast(effective_datetime as varchar), presented_form_content_type,
           presented_form_data, named_values, person_key, shift_days, phi_values, batch_id,
           source_sha256
    from reports
    where presented_form_data is not null
)

select
    pseudonym(resource_type, id) as document_id,
    person_key,
    resource_type as source_resource_type,
    doc_type,
    doc_type_code,
    {{ shifted_day('doc_datetime') }} as doc_date,
    content_type,
    {{ scrub_fhir_text('try(decode(from_base64(attachment_data)))') }} as text,
    batch_id as source_batch_id,
    source_sha256,
    batch_id,
    pseudonym('Encounter', encounter_key) as encounter_id
from docs
