{{ config(alias='patient_360') }}
-- One row per person across EHR, imaging and genomics. Imaging and genomics link to
-- the person through the MRN (DICOM PatientID, VCF sample manifest) → person_key.
with people as (
    select * from {{ ref('silver_patient') }}
),

identity as (
    select distinct person_key, shift_days, patient_ref from {{ ref('int_patient_identity') }}
),

ehr as (
    select
        i.person_key,
        count(*) filter (where f.resource_type = 'Encounter') as encounters,
        count(*) filter (where f.resource_type = 'Condition') as conditions,
        count(*) filter (where f.resource_type = 'Observation') as observations,
        count(*) filter (where f.resource_type = 'MedicationRequest') as medication_requests,
        count(*) filter (where f.resource_type = 'Procedure') as procedures,
        list_sort(list_distinct(list(
            coalesce(json_extract_string(f.resource, '$.code.coding[0].display'),
                     json_extract_string(f.resource, '$.code.text'))
        ) filter (where f.resource_type = 'Condition'))) as condition_names
    from {{ source('bronze', 'fhir_resources') }} f
    join identity i using (patient_ref)
    group by 1
),

documents as (
    select person_key, count(*) as documents
    from {{ ref('silver_document') }}
    group by 1
),

-- Aggregate by the source identifier first, then key it: the pseudonym function runs
-- once per person, not once per DICOM instance or genotype.
imaging_by_mrn as (
    select
        patient_ref as mrn,
        count(distinct study_instance_uid) as imaging_studies,
        count(*) as imaging_instances,
        list_sort(list_distinct(list(modality))) as imaging_modalities,
        max(study_date) as last_study_date_raw
    from {{ source('bronze', 'dicom_instances') }}
    group by 1
),

imaging as (
    select person_key(mrn) as person_key, * exclude (mrn) from imaging_by_mrn
),

imaging_per_modality as (
    -- Both lists in one order, so the map (and the table's fingerprint) is the same every run.
    select person_key, map(list(modality order by modality), list(studies order by modality))
        as imaging_studies_by_modality
    from (select person_key, modality, count(*) as studies
          from {{ ref('silver_imaging_study') }} group by 1, 2)
    group by 1
),

-- Genomics per person from silver (alleles split and trimmed, already keyed by person).
genomics as (
    select
        g.person_key,
        count(*) filter (where g.alt_allele_count > 0) as variants_carried,
        count(*) filter (where g.alt_allele_count > 0 and v.is_pathogenic) as pathogenic_variants,
        list_sort(list_distinct(list(v.gene) filter (where g.alt_allele_count > 0 and v.is_pathogenic)))
            as pathogenic_genes
    from {{ ref('silver_genotype') }} g
    left join {{ ref('silver_variant') }} v using (variant_id)
    group by 1
)

select
    p.person_key,
    p.gender,
    p.birth_year,
    p.deceased,
    coalesce(e.encounters, 0) as encounters,
    coalesce(e.conditions, 0) as conditions,
    coalesce(e.condition_names, []) as condition_names,
    coalesce(e.observations, 0) as observations,
    coalesce(e.medication_requests, 0) as medication_requests,
    coalesce(e.procedures, 0) as procedures,
    coalesce(d.documents, 0) as documents,
    coalesce(im.imaging_studies, 0) as imaging_studies,
    coalesce(im.imaging_instances, 0) as imaging_instances,
    coalesce(im.imaging_modalities, []) as imaging_modalities,
    ipm.imaging_studies_by_modality,
    {{ shifted_date('im.last_study_date_raw::varchar', 'coalesce(i.shift_days, 0)') }} as last_study_date,
    coalesce(g.variants_carried, 0) as variants_carried,
    coalesce(g.pathogenic_genes, []) as pathogenic_genes,
    coalesce(g.pathogenic_variants, 0) as pathogenic_variants,
    (im.person_key is not null) as has_imaging,
    (g.person_key is not null) as has_genomics,
    -- Row provenance: the silver.patient row (and so the bronze Patient) this row is keyed on.
    p.batch_id,
    p.source_sha256
from people p
left join (select person_key, any_value(shift_days) as shift_days from identity group by 1) i
    using (person_key)
left join ehr e using (person_key)
left join documents d using (person_key)
left join imaging im using (person_key)
left join imaging_per_modality ipm using (person_key)
left join genomics g using (person_key)
