{{ config(alias='document') }}
-- Clinical notes (DocumentReference) and report texts (DiagnosticReport.presentedForm),
-- decoded from base64 and scrubbed: the person's own identifier values are redacted,
-- shaped identifiers (SSN, phone, e-mail, ZIP, MRN) tagged, dates shifted per person.
with docs as (
    select
        f.resource_type,
        f.resource_id,
        f.resource::json as r,
        f.patient_ref,
        f.batch_id,
        f.source_sha256,
        case f.resource_type
            when 'DocumentReference' then json_extract(f.resource, '$.content[0].attachment')
            else json_extract(f.resource, '$.presentedForm[0]')
        end as attachment
    from {{ source('bronze', 'fhir_resources') }} f
    where f.resource_type in ('DocumentReference', 'DiagnosticReport')
),

decoded as (
    select
        d.*,
        coalesce(i.shift_days, 0) as shift_days,
        i.person_key,
        i.phi_values,
        json_extract_string(attachment, '$.contentType') as content_type,
        try(decode(from_base64(json_extract_string(attachment, '$.data')))) as raw_text
    from docs d
    left join {{ ref('int_patient_identity') }} i using (patient_ref)
    where attachment is not null
)

select
    pseudonym(resource_type, resource_id) as document_id,
    person_key,
    resource_type as source_resource_type,
    case resource_type
        when 'DocumentReference' then {{ fhir_display('$.type') }}
        else {{ fhir_display('$.code') }}
    end as doc_type,
    case resource_type
        when 'DocumentReference' then {{ fhir_code('$.type') }}
        else {{ fhir_code('$.code') }}
    end as doc_type_code,
    {{ shifted_date("coalesce(" ~ fhir_str('$.date') ~ ", " ~ fhir_str('$.effectiveDateTime') ~ ", " ~ fhir_str('$.issued') ~ ")") }} as doc_date,
    content_type,
    {{ scrub_fhir_text('raw_text') }} as text,
    batch_id as source_batch_id,
    source_sha256
from decoded
