{{ config(alias='encounter') }}
-- Encounters from the SQL-on-FHIR view `encounter` (dbt_project/views/encounter.json),
-- keyed by pseudonyms, dates shifted per person.
with v as ({{ sof_base('encounter') }})

select
    pseudonym('Encounter', resource_key) as encounter_id,
    person_key,
    status,
    class_code,
    class_system,
    type_code,
    type_system,
    type_display,
    {{ shifted_day('period_start') }} as start_date,
    {{ shifted_ts('period_start') }} as start_datetime,
    {{ shifted_day('period_end') }} as end_date,
    {{ shifted_ts('period_end') }} as end_datetime,
    pseudonym('Condition', reason_condition_key) as reason_condition_id,
    batch_id,
    source_sha256
from v
