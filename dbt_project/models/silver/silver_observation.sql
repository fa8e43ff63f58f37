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
    case
        when value_quantity is not null then 'Quantity'
        when value_concept_code is not null then 'CodeableConcept'
        when value_string is not null then 'string'
        when value_boolean is not null then 'boolean'
        when value_integer is not null then 'integer'
        when value_datetime is not null then 'dateTime'
    end as value_type,
    coalesce(try_cast(value_quantity as double), try_cast(value_integer as double)) as value_number,
    value_unit,
    value_unit_code,
    value_concept_code,
    value_concept_system,
    value_concept_display,
    -- Free text can name the patient: scrubbed like notes.
    scrub_text(cast(value_string as varchar), phi_values, shift_days) as value_string,
    try_cast(value_boolean as boolean) as value_boolean,
    {{ shifted_ts('value_datetime') }} as value_datetime,
    interpretation_code,
    try_cast(reference_low as double) as reference_low,
    try_cast(reference_high as double) as reference_high,
    coalesce(try_cast(has_components as boolean), false) as has_components,
    batch_id,
    source_sha256
from v
