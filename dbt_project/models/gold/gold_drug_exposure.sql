{{ config(alias='drug_exposure') }}
-- OMOP CDM 5.4 DRUG_EXPOSURE: medication requests (RxNorm) and immunizations (CVX), as
-- OMOP puts vaccines in the drug domain.
with drugs as (
    select medication_request_id as source_id, person_key, encounter_id, medication_code as code,
           medication_system as code_system, authored_date as start_date,
           authored_datetime as start_datetime, dosage_text as sig, status, batch_id, source_sha256
    from {{ ref('silver_medication_request') }}
    union all
    select immunization_id, person_key, encounter_id, vaccine_code, vaccine_system,
           occurrence_date, occurrence_datetime, null, status, batch_id, source_sha256
    from {{ ref('silver_immunization') }}
),

concepts as (select * from {{ ref('concept_map') }})

select
    {{ omop_id('d.source_id') }} as drug_exposure_id,
    {{ omop_id('d.person_key') }} as person_id,
    coalesce(m.concept_id, 0)::integer as drug_concept_id,
    d.start_date as drug_exposure_start_date,
    d.start_datetime as drug_exposure_start_datetime,
    -- The source has no end: OMOP requires one, and the convention is the start.
    d.start_date as drug_exposure_end_date,
    d.start_datetime as drug_exposure_end_datetime,
    null::date as verbatim_end_date,
    32817 as drug_type_concept_id,  -- EHR
    case when d.status in ('stopped', 'cancelled') then d.status end as stop_reason,
    null::integer as refills,
    null::double as quantity,
    null::integer as days_supply,
    d.sig,
    0 as route_concept_id,
    null::varchar as lot_number,
    null::bigint as provider_id,
    {{ omop_id('d.encounter_id') }} as visit_occurrence_id,
    null::bigint as visit_detail_id,
    d.code as drug_source_value,
    coalesce(m.concept_id, 0)::integer as drug_source_concept_id,
    null::varchar as route_source_value,
    null::varchar as dose_unit_source_value,
    d.source_id,
    d.batch_id,
    d.source_sha256
from drugs d
left join concepts m on m.vocabulary_id = {{ vocabulary_id('d.code_system') }} and m.concept_code = d.code
where d.person_key is not null
