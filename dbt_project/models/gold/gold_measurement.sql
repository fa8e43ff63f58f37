{{ config(alias='measurement') }}
-- OMOP CDM 5.4 MEASUREMENT: laboratory and vital-sign observations with a single value,
-- plus every component of a panel (systolic and diastolic blood pressure are two rows;
-- the panel itself has no value and is not a measurement).
with m as (
    select observation_id as source_id, person_key, encounter_id, code, code_system,
           effective_date, effective_datetime, value_number, value_unit_code,
           value_unit, value_concept_code, value_concept_system, interpretation_code,
           reference_low, reference_high, batch_id, source_sha256
    from {{ ref('silver_observation') }}
    where category_code in ('laboratory', 'vital-signs') and not has_components
    union all
    select component_id, person_key, encounter_id, code, code_system, effective_date,
           effective_datetime, value_number, value_unit_code, value_unit, value_concept_code,
           value_concept_system, interpretation_code, null, null, batch_id, source_sha256
    from {{ ref('silver_observation_component') }}
    where category_code in ('laboratory', 'vital-signs')
),

concepts as (select * from {{ ref('concept_map') }})

select
    {{ omop_id('m.source_id') }} as measurement_id,
    {{ omop_id('m.person_key') }} as person_id,
    coalesce(c.concept_id, 0)::integer as measurement_concept_id,
    m.effective_date as measurement_date,
    m.effective_datetime as measurement_datetime,
    strftime(m.effective_datetime, '%H:%M:%S') as measurement_time,
    32817 as measurement_type_concept_id,  -- EHR
    null::integer as operator_concept_id,
    m.value_number as value_as_number,
    coalesce(v.concept_id, 0)::integer as value_as_concept_id,
    coalesce(u.concept_id, 0)::integer as unit_concept_id,
    m.reference_low as range_low,
    m.reference_high as range_high,
    null::bigint as provider_id,
    {{ omop_id('m.encounter_id') }} as visit_occurrence_id,
    null::bigint as visit_detail_id,
    m.code as measurement_source_value,
    coalesce(c.concept_id, 0)::integer as measurement_source_concept_id,
    coalesce(m.value_unit_code, m.value_unit) as unit_source_value,
    coalesce(u.concept_id, 0)::integer as unit_source_concept_id,
    coalesce(cast(m.value_number as varchar), m.value_concept_code) as value_source_value,
    null::bigint as measurement_event_id,
    0 as meas_event_field_concept_id,
    m.source_id,
    m.batch_id,
    m.source_sha256
from m
left join concepts c on c.vocabulary_id = {{ vocabulary_id('m.code_system') }} and c.concept_code = m.code
left join concepts v on v.vocabulary_id = {{ vocabulary_id('m.value_concept_system') }}
    and v.concept_code = m.value_concept_code
left join concepts u on u.vocabulary_id = 'UCUM' and u.concept_code = m.value_unit_code
where m.person_key is not null
