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
    case
        when value_quantity is not null then 'Quantity'
        when value_concept_code is not null then 'CodeableConcept'
        when value_string is not null then 'string'
        when value_boolean is not null then 'boolean'
        when value_integer is not null then 'integer'
    end as value_type,
    coalesce(try_cast(value_quantity as double), try_cast(value_integer as double)) as value_number,
    value_unit,
    value_unit_code,
    value_concept_code,
    value_concept_system,
    value_concept_display,
    scrub_text(cast(value_string as varchar), phi_values, shift_days) as value_string,
    try_cast(value_boolean as boolean) as value_boolean,
    interpretation_code,
    batch_id,
    source_sha256
from v
