{{ config(alias='condition') }}
-- Conditions from the SQL-on-FHIR view `condition`; codes kept with their system.
with v as ({{ sof_base('condition') }})

select
    pseudonym('Condition', resource_key) as condition_id,
    person_key,
    pseudonym('Encounter', encounter_key) as encounter_id,
    clinical_status,
    verification_status,
    category_code,
    code_code as code,
    code_system,
    code_display,
    {{ shifted_day('onset_datetime') }} as onset_date,
    {{ shifted_ts('onset_datetime') }} as onset_datetime,
    {{ shifted_day('abatement_datetime') }} as abatement_date,
    {{ shifted_day('recorded_date') }} as recorded_date,
    batch_id,
    source_sha256
from v
