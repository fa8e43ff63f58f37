-- One row per FHIR Patient: the MRN that links every modality, its keyed pseudonym,
-- the person's date shift, and the identifier values that free text must be scrubbed of.
-- Ephemeral: identifiers never leave this CTE except as person_key.
with patients as (
    select resource_id, last_updated, resource::json as r
    from {{ source('bronze', 'fhir_resources') }}
    where resource_type = 'Patient'
),

mrns as (
    select p.resource_id, max(json_extract_string(i.ident, '$.value')) as mrn
    from patients p, unnest(json_extract(p.r, '$.identifier[*]')) as i(ident)
    where json_extract_string(i.ident, '$.type.coding[0].code') = 'MR'
    group by 1
),

linked as (
    select
        p.resource_id,
        p.last_updated,
        p.r,
        -- A patient without an MRN is still keyed, by its FHIR id.
        coalesce(m.mrn, 'Patient/' || p.resource_id) as mrn
    from patients p
    left join mrns m using (resource_id)
)

select
    'Patient/' || resource_id as patient_ref,
    resource_id,
    last_updated,
    mrn,
    person_key(mrn) as person_key,
    date_shift_days(mrn) as shift_days,
    to_json(list_distinct(list_filter(flatten([
        json_extract_string(r, '$.name[*].family'),
        json_extract_string(r, '$.name[*].given[*]'),
        json_extract_string(r, '$.identifier[*].value'),
        json_extract_string(r, '$.telecom[*].value'),
        json_extract_string(r, '$.address[*].line[*]'),
        json_extract_string(r, '$.address[*].city'),
        json_extract_string(r, '$.address[*].postalCode'),
        [json_extract_string(r, '$.birthDate'), mrn]
    ]), lambda x: x is not null))) as phi_values
from linked
