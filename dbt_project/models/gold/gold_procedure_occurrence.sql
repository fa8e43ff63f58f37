{{ config(alias='procedure_occurrence') }}
-- OMOP CDM 5.4 PROCEDURE_OCCURRENCE: one row per FHIR Procedure, plus one per imaging
-- study the EHR records no Procedure for (gold.image_occurrence needs a procedure).
with p as (
    select procedure_id, person_key, encounter_id, code, code_system, performed_date,
           performed_datetime, performed_end_date, performed_end_datetime, batch_id, source_sha256
    from {{ ref('silver_procedure') }}
    union all
    select imaging_study_id, person_key, encounter_id, procedure_code, procedure_system,
           started_date, started_datetime, null, null, batch_id, source_sha256
    from {{ ref('int_imaging_procedure') }}
    where procedure_id is null
),

concepts as (select * from {{ ref('concept_map') }})

select
    {{ omop_id('p.procedure_id') }} as procedure_occurrence_id,
    {{ omop_id('p.person_key') }} as person_id,
    coalesce(m.concept_id, 0)::integer as procedure_concept_id,
    p.performed_date as procedure_date,
    p.performed_datetime as procedure_datetime,
    p.performed_end_date as procedure_end_date,
    p.performed_end_datetime as procedure_end_datetime,
    32817 as procedure_type_concept_id,  -- EHR
    0 as modifier_concept_id,
    null::integer as quantity,
    null::bigint as provider_id,
    {{ omop_id('p.encounter_id') }} as visit_occurrence_id,
    null::bigint as visit_detail_id,
    p.code as procedure_source_value,
    coalesce(m.concept_id, 0)::integer as procedure_source_concept_id,
    null::varchar as modifier_source_value,
    p.procedure_id,
    p.batch_id,
    p.source_sha256
from p
left join concepts m on m.vocabulary_id = {{ vocabulary_id('p.code_system') }} and m.concept_code = p.code
where p.person_key is not null
