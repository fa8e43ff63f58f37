{{ config(alias='condition_occurrence') }}
-- OMOP CDM 5.4 CONDITION_OCCURRENCE, one row per FHIR Condition.
with c as (select * from {{ ref('silver_condition') }}),

concepts as (select * from {{ ref('concept_map') }})

select
    {{ omop_id('c.condition_id') }} as condition_occurrence_id,
    {{ omop_id('c.person_key') }} as person_id,
    coalesce(m.concept_id, 0)::integer as condition_concept_id,
    coalesce(c.onset_date, c.recorded_date) as condition_start_date,
    coalesce(c.onset_datetime, c.recorded_date::timestamp) as condition_start_datetime,
    c.abatement_date as condition_end_date,
    c.abatement_date::timestamp as condition_end_datetime,
    32817 as condition_type_concept_id,  -- EHR
    0 as condition_status_concept_id,
    null::varchar as stop_reason,
    null::bigint as provider_id,
    {{ omop_id('c.encounter_id') }} as visit_occurrence_id,
    null::bigint as visit_detail_id,
    c.code as condition_source_value,
    coalesce(m.concept_id, 0)::integer as condition_source_concept_id,
    c.clinical_status as condition_status_source_value,
    c.condition_id,
    c.batch_id,
    c.source_sha256
from c
left join concepts m on m.vocabulary_id = {{ vocabulary_id('c.code_system') }} and m.concept_code = c.code
where c.person_key is not null
