{{ config(alias='visit_occurrence') }}
-- OMOP CDM 5.4 VISIT_OCCURRENCE, one row per encounter; the class (AMB/EMER/IMP) decides
-- the visit concept.
with e as (select * from {{ ref('silver_encounter') }}),

concepts as (select * from {{ ref('concept_map') }})

select
    {{ omop_id('e.encounter_id') }} as visit_occurrence_id,
    {{ omop_id('e.person_key') }} as person_id,
    coalesce(c.concept_id, 0)::integer as visit_concept_id,
    e.start_date as visit_start_date,
    e.start_datetime as visit_start_datetime,
    coalesce(e.end_date, e.start_date) as visit_end_date,
    coalesce(e.end_datetime, e.start_datetime) as visit_end_datetime,
    32817 as visit_type_concept_id,  -- EHR
    null::bigint as provider_id,
    null::bigint as care_site_id,
    e.class_code as visit_source_value,
    coalesce(c.concept_id, 0)::integer as visit_source_concept_id,
    0 as admitted_from_concept_id,
    null::varchar as admitted_from_source_value,
    0 as discharged_to_concept_id,
    null::varchar as discharged_to_source_value,
    null::bigint as preceding_visit_occurrence_id,
    e.encounter_id,
    e.batch_id,
    e.source_sha256
from e
left join concepts c on c.vocabulary_id = 'Visit' and c.concept_code = e.class_code
where e.person_key is not null
