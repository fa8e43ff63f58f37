{{ config(alias='procedure') }}
-- Procedures from the SQL-on-FHIR view `procedure`; performed[x] as a start and end.
with v as ({{ sof_base('procedure') }})

select
    pseudonym('Procedure', resource_key) as procedure_id,
    person_key,
    pseudonym('Encounter', encounter_key) as encounter_id,
    status,
    code_code as code,
    code_system,
    code_display,
    {{ shifted_day('coalesce(performed_datetime, performed_start)') }} as performed_date,
    {{ shifted_ts('coalesce(performed_datetime, performed_start)') }} as performed_datetime,
    {{ shifted_day('performed_end') }} as performed_end_date,
    {{ shifted_ts('performed_end') }} as performed_end_datetime,
    batch_id,
    source_sha256
from v
