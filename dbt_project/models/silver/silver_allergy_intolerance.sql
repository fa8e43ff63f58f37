{{ config(alias='allergy_intolerance') }}
-- Allergies and intolerances from the SQL-on-FHIR view `allergy_intolerance`.
with v as ({{ sof_base('allergy_intolerance') }})

select
    pseudonym('AllergyIntolerance', resource_key) as allergy_id,
    person_key,
    pseudonym('Encounter', encounter_key) as encounter_id,
    clinical_status,
    verification_status,
    allergy_type,
    category,
    criticality,
    code_code as code,
    code_system,
    code_display,
    {{ shifted_day('recorded_date') }} as recorded_date,
    reaction_code,
    reaction_display,
    reaction_severity,
    batch_id,
    source_sha256
from v
