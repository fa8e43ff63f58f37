{{ config(alias='observation') }}
-- Observations from the SQL-on-FHIR view `observation`, one row per resource. value[x]
-- arrives split by type; `value_type` names the one present and `value_number` holds any
-- numeric one. Components (systolic/diastolic…) are in silver.observation_component.
with v as ({{ sof_base('observation') }})

select
    pseudonym('Observation', resource_key) as observation_id,
    person_key,
    pseudonym('Encounter', encounter_key) as encounter_id,
    status,
    category_code,
    code_code as code,
    code_system,
    code_display,
    {{ shifted_day('coalesce(effective_datetime, effective_start, issued)') }} as effective_date,
    {{ shifted_ts('coalesce(effective_datetime, effective_start, issued)') }} as effective_datetime,
    {{ observation_value() }},
    {{ shifted_ts('value_datetime') }} as value_datetime,
    interpretation_code,
    try_cast(reference_low as double) as reference_low,
    try_cast(reference_high as double) as reference_high,
    coalesce(try_cast(has_components as boolean), false) as has_components,
    batch_id,
    source_sha256
from v
