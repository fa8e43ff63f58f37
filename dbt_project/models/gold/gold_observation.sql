{{ config(alias='observation') }}
-- OMOP CDM 5.4 OBSERVATION: FHIR Observations outside the laboratory and vital-sign
-- categories (e.g. smoking status, its value as a concept) and allergies, which OMOP keeps
-- as observations of the substance.
with o as (
    select observation_id as source_id, person_key, encounter_id, code, code_system,
           effective_date, effective_datetime, value_number, value_string, value_concept_code,
           value_concept_system, value_unit_code, null as qualifier, batch_id, source_sha256
    from {{ ref('silver_observation') }}
    where category_code is distinct from 'laboratory'
      and category_code is distinct from 'vital-signs'
    union all
    select allergy_id, person_key, encounter_id, code, code_system, recorded_date,
           recorded_date::timestamp, null, null, reaction_code, 'http://snomed.info/sct', null,
           criticality, batch_id, source_sha256
    from {{ ref('silver_allergy_intolerance') }}
),

concepts as (select * from {{ ref('concept_map') }})

select
    {{ omop_id('o.source_id') }} as observation_id,
    {{ omop_id('o.person_key') }} as person_id,
    coalesce(c.concept_id, 0)::integer as observation_concept_id,
    o.effective_date as observation_date,
    o.effective_datetime as observation_datetime,
    32817 as observation_type_concept_id,  -- EHR
    o.value_number as value_as_number,
    o.value_string as value_as_string,
    coalesce(v.concept_id, 0)::integer as value_as_concept_id,
    0 as qualifier_concept_id,
    0 as unit_concept_id,
    null::bigint as provider_id,
    {{ omop_id('o.encounter_id') }} as visit_occurrence_id,
    null::bigint as visit_detail_id,
    o.code as observation_source_value,
    coalesce(c.concept_id, 0)::integer as observation_source_concept_id,
    o.value_unit_code as unit_source_value,
    o.qualifier as qualifier_source_value,
    coalesce(o.value_concept_code, o.value_string, cast(o.value_number as varchar)) as value_source_value,
    null::bigint as observation_event_id,
    0 as obs_event_field_concept_id,
    o.source_id,
    o.batch_id,
    o.source_sha256
from o
left join concepts c on c.vocabulary_id = {{ vocabulary_id('o.code_system') }} and c.concept_code = o.code
left join concepts v on v.vocabulary_id = {{ vocabulary_id('o.value_concept_system') }}
    and v.concept_code = o.value_concept_code
where o.person_key is not null
