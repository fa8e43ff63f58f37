{{ config(alias='immunization') }}
-- Immunizations from the SQL-on-FHIR view `immunization` (CVX codes).
with v as ({{ sof_base('immunization') }})

select
    pseudonym('Immunization', resource_key) as immunization_id,
    person_key,
    pseudonym('Encounter', encounter_key) as encounter_id,
    status,
    vaccine_code,
    vaccine_system,
    vaccine_display,
    {{ shifted_day('occurrence_datetime') }} as occurrence_date,
    {{ shifted_ts('occurrence_datetime') }} as occurrence_datetime,
    try_cast(primary_source as boolean) as primary_source,
    batch_id,
    source_sha256
from v
