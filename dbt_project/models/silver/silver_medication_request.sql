{{ config(alias='medication_request') }}
-- Medication requests from the SQL-on-FHIR view `medication_request` (RxNorm codes).
with v as ({{ sof_base('medication_request') }})

select
    pseudonym('MedicationRequest', resource_key) as medication_request_id,
    person_key,
    pseudonym('Encounter', encounter_key) as encounter_id,
    status,
    intent,
    medication_code,
    medication_system,
    medication_display,
    {{ shifted_day('authored_on') }} as authored_date,
    {{ shifted_ts('authored_on') }} as authored_datetime,
    scrub_text(cast(dosage_text as varchar), phi_values, shift_days) as dosage_text,
    pseudonym('Condition', reason_condition_key) as reason_condition_id,
    batch_id,
    source_sha256
from v
