{{ config(alias='observation_component') }}
-- Observation components (e.g. systolic and diastolic of a blood-pressure panel), one row
-- per component, from the SQL-on-FHIR view `observation_component` (forEach component).
with v as ({{ sof_base('observation_component') }})

select
    pseudonym('ObservationComponent', resource_key || '|' || coalesce(code_system, '') || '|'
              || coalesce(code_code, '')) as component_id,
    pseudonym('Observation', resource_key) as observation_id,
    person_key,
    pseudonym('Encounter', encounter_key) as encounter_id,
    status,
    category_code,
    panel_code,
    code_code as code,
    code_system,
    code_display,
    {{ shifted_day('effective_datetime') }} as effective_date,
    {{ shifted_ts('effective_datetime') }} as effective_datetime,
    {{ observation_value(with_datetime=false) }},
    interpretation_code,
    batch_id,
    source_sha256
from v
