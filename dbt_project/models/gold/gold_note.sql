{{ config(alias='note') }}
-- OMOP CDM 5.4 NOTE: the de-identified note and report texts of silver.document.
with d as (select * from {{ ref('silver_document') }}),

concepts as (select * from {{ ref('concept_map') }})

select
    {{ omop_id('d.document_id') }} as note_id,
    {{ omop_id('d.person_key') }} as person_id,
    d.doc_date as note_date,
    d.doc_date::timestamp as note_datetime,
    32817 as note_type_concept_id,  -- EHR
    coalesce(c.concept_id, 0)::integer as note_class_concept_id,
    d.doc_type as note_title,
    d.text as note_text,
    32678 as encoding_concept_id,   -- UTF-8
    4180186 as language_concept_id,  -- English
    null::bigint as provider_id,
    {{ omop_id('d.encounter_id') }} as visit_occurrence_id,
    null::bigint as visit_detail_id,
    d.doc_type_code as note_source_value,
    null::bigint as note_event_id,
    0 as note_event_field_concept_id,
    d.document_id,
    d.batch_id,
    d.source_sha256
from d
left join concepts c on c.vocabulary_id = 'LOINC' and c.concept_code = d.doc_type_code
where d.person_key is not null
