-- FHIR side of imaging linkage: each ImagingStudy with its radiology DiagnosticReport,
-- keyed like DICOM (study_uid = derived_uid of the `urn:dicom:uid` identifier without
-- its `urn:oid:` prefix; accession_key = pseudonym of the ACSN identifier). The report
-- text is silver.document's (one scrubbing for both); the conclusion is scrubbed here.
-- Ephemeral and small on purpose: SQL-on-FHIR silver tables can replace it later.
with fhir as (
    select resource_type, resource_id, patient_ref, batch_id, source_sha256, resource::json as r
    from {{ source('bronze', 'fhir_resources') }}
    where resource_type in ('ImagingStudy', 'DiagnosticReport')
),

idents as (
    select
        f.resource_type,
        f.resource_id,
        max(regexp_replace(json_extract_string(i.ident, '$.value'), '^urn:oid:', ''))
            filter (where json_extract_string(i.ident, '$.system') = 'urn:dicom:uid') as study_instance_uid,
        max(json_extract_string(i.ident, '$.value'))
            filter (where json_extract_string(i.ident, '$.type.coding[0].code') = 'ACSN') as accession
    from fhir f, unnest(json_extract(f.r, '$.identifier[*]')) as i(ident)
    group by 1, 2
),

studies as (
    select f.resource_id, f.patient_ref, i.study_instance_uid, i.accession
    from fhir f
    left join idents i using (resource_type, resource_id)
    where f.resource_type = 'ImagingStudy'
),

-- Radiology reports: those that point at an ImagingStudy or carry an accession number.
reports as (
    select
        f.*,
        i.accession,
        regexp_replace(json_extract_string(f.r, '$.imagingStudy[0].reference'),
                       '^ImagingStudy/', '') as imaging_study_id
    from fhir f
    left join idents i using (resource_type, resource_id)
    where f.resource_type = 'DiagnosticReport'
      and (json_extract(f.r, '$.imagingStudy[0]') is not null or i.accession is not null)
),

pairs as (
    select
        s.resource_id as imaging_study_id,
        s.study_instance_uid,
        coalesce(s.accession, rp.accession) as accession,
        coalesce(rp.patient_ref, s.patient_ref) as patient_ref,
        rp.resource_id as report_resource_id,
        rp.r,
        coalesce(rp.batch_id, sb.batch_id) as batch_id,
        coalesce(rp.source_sha256, sb.source_sha256) as source_sha256
    from studies s
    full join reports rp
        on rp.imaging_study_id = s.resource_id
        or (rp.imaging_study_id is null and rp.accession = s.accession)
    left join fhir sb on sb.resource_type = 'ImagingStudy' and sb.resource_id = s.resource_id
)

select
    derived_uid(p.study_instance_uid) as study_uid,
    pseudonym('accession', p.accession) as accession_key,
    pseudonym('ImagingStudy', p.imaging_study_id) as fhir_imaging_study_id,
    pseudonym('DiagnosticReport', p.report_resource_id) as report_id,
    i.person_key,
    {{ shifted_date("json_extract_string(p.r, '$.effectiveDateTime')", 'coalesce(i.shift_days, 0)') }} as report_date,
    {{ scrub_fhir_text("json_extract_string(r, '$.conclusion')", 'i.phi_values', 'coalesce(i.shift_days, 0)') }}
        as conclusion,
    d.text,
    p.batch_id,
    p.source_sha256
from pairs p
left join {{ ref('int_patient_identity') }} i using (patient_ref)
left join {{ ref('silver_document') }} d
    on d.document_id = pseudonym('DiagnosticReport', p.report_resource_id)
