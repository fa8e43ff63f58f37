{{ config(alias='patient') }}
-- De-identified patients from the SQL-on-FHIR view `patient`: person_key instead of
-- identifiers, dates shifted per person, no names, addresses (state kept, as Safe Harbor
-- allows) or contact details.
with patients as (
    -- lineage: the view reads {{ source('bronze', 'fhir_resources') }}
    select
        v.*,
        i.person_key,
        i.shift_days
    from {{ source('sof', 'patient') }} v
    join {{ ref('int_patient_identity') }} i on i.resource_id = v.id
)

select
    person_key,
    gender,
    {{ shifted_day('birth_date') }} as birth_date,
    year({{ shifted_day('birth_date') }}) as birth_year,
    (deceased_datetime is not null or coalesce(try_cast(deceased_boolean as boolean), false)) as deceased,
    {{ shifted_day('deceased_datetime') }} as deceased_date,
    marital_status_code as marital_status,
    language_code as language,
    state,
    race_code,
    ethnicity_code,
    batch_id as source_batch_id,
    source_sha256,
    batch_id
from patients
-- Two registrations of one MRN are one person: keep the latest record.
qualify row_number() over (partition by person_key order by last_updated desc nulls last) = 1
