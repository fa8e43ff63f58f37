{{ config(alias='patient') }}
-- De-identified patients: person_key instead of identifiers, dates shifted per person,
-- no names, addresses (state kept, as Safe Harbor allows) or contact details.
with patients as (
    select
        i.person_key,
        i.shift_days,
        i.last_updated,
        f.resource::json as r,
        f.batch_id,
        f.source_sha256
    from {{ source('bronze', 'fhir_resources') }} f
    join {{ ref('int_patient_identity') }} i on i.resource_id = f.resource_id
    where f.resource_type = 'Patient'
)

select
    person_key,
    {{ fhir_str('$.gender') }} as gender,
    {{ shifted_date(fhir_str('$.birthDate')) }} as birth_date,
    year({{ shifted_date(fhir_str('$.birthDate')) }}) as birth_year,
    ({{ fhir_str('$.deceasedDateTime') }} is not null
        or coalesce(json_extract(r, '$.deceasedBoolean')::boolean, false)) as deceased,
    {{ shifted_date(fhir_str('$.deceasedDateTime')) }} as deceased_date,
    {{ fhir_code('$.maritalStatus') }} as marital_status,
    {{ fhir_code('$.communication[0].language') }} as language,
    {{ fhir_str('$.address[0].state') }} as state,
    batch_id as source_batch_id,
    -- Row provenance (the helpers' contract): the bronze batch and file of this row.
    batch_id,
    source_sha256
from patients
-- Two registrations of one MRN are one person: keep the latest record.
qualify row_number() over (partition by person_key order by last_updated desc nulls last) = 1
