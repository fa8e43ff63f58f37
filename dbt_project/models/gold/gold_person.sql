{{ config(alias='person') }}
-- OMOP CDM 5.4 PERSON. person_id is derived from person_key (the first 60 bits of the
-- pseudonym), so it is an integer, stable across rebuilds, and never the MRN.
with p as (select * from {{ ref('silver_patient') }}),

concepts as (select * from {{ ref('concept_map') }})

select
    {{ omop_id('p.person_key') }} as person_id,
    coalesce(g.concept_id, 0)::integer as gender_concept_id,
    year(p.birth_date)::integer as year_of_birth,
    month(p.birth_date)::integer as month_of_birth,
    day(p.birth_date)::integer as day_of_birth,
    p.birth_date::timestamp as birth_datetime,
    coalesce(r.concept_id, 0)::integer as race_concept_id,
    coalesce(e.concept_id, 0)::integer as ethnicity_concept_id,
    null::bigint as location_id,
    null::bigint as provider_id,
    null::bigint as care_site_id,
    p.person_key as person_source_value,
    p.gender as gender_source_value,
    0 as gender_source_concept_id,
    p.race_code as race_source_value,
    0 as race_source_concept_id,
    p.ethnicity_code as ethnicity_source_value,
    0 as ethnicity_source_concept_id,
    p.person_key,
    p.batch_id,
    p.source_sha256
from p
left join concepts g on g.vocabulary_id = 'Gender' and g.concept_code = p.gender
left join concepts r on r.vocabulary_id = 'Race' and r.concept_code = p.race_code
left join concepts e on e.vocabulary_id = 'Ethnicity' and e.concept_code = p.ethnicity_code
