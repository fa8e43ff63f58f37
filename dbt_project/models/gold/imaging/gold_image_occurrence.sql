{{ config(alias='image_occurrence', meta={'dagster': {'group': 'imaging'}}) }}
-- OMOP Medical Imaging extension (MI-CDM) IMAGE_OCCURRENCE: one row per DICOM series
-- whose study is linked to the EHR (a FHIR ImagingStudy of a known person), pointing at the
-- procedure that produced it. Series of unlinked studies are left out: the imaging
-- linkage check counts them. UIDs are the derived ones; wadors_uri and local_path stay
-- null, since no DICOMweb server is configured and a landing path can name the patient.
-- Modality and body part keep their DICOM codes as source values (concept 0: no
-- vocabulary ships with the project).
with series as (
    select * from {{ ref('silver_imaging_series') }}
),

studies as (
    select study_uid, accession_key, study_date from {{ ref('silver_imaging_study') }}
),

fhir as (
    select * from {{ ref('int_imaging_procedure') }}
),

linked as (
    select
        se.*,
        st.study_date,
        f.person_key as ehr_person_key,
        coalesce(f.procedure_id, f.imaging_study_id) as procedure_id,
        f.encounter_id,
        -- a study carrying both keys could match twice: the UID match wins
        row_number() over (partition by se.series_uid
                           order by (f.study_uid = se.study_uid) desc, f.imaging_study_id) as n
    from series se
    join studies st using (study_uid)
    join fhir f
        on f.study_uid = se.study_uid
        or (f.study_uid is null and f.accession_key = st.accession_key)
)

select
    {{ omop_id('series_uid_hex') }} as image_occurrence_id,
    {{ omop_id('ehr_person_key') }} as person_id,
    {{ omop_id('procedure_id') }} as procedure_occurrence_id,
    {{ omop_id('encounter_id') }} as visit_occurrence_id,
    0 as anatomic_site_concept_id,
    null::varchar as wadors_uri,
    null::varchar as local_path,
    coalesce(series_date, study_date) as image_occurrence_date,
    study_uid as image_study_uid,
    series_uid as image_series_uid,
    0 as modality_concept_id,
    modality as modality_source_value,
    body_part as anatomic_site_source_value,
    batch_id,
    source_sha256
from (select *, md5(series_uid) as series_uid_hex from linked where n = 1)
where ehr_person_key is not null
