-- Every DICOM instance in bronze with its person's key and date shift, derived UIDs and
-- the PHI values its free-text descriptors must be cleaned of. Ephemeral: the raw
-- values never leave this CTE; silver models select only de-identified columns.
-- PatientID is the MRN (as in int_patient_identity), so keying and shifting it gives the
-- same person_key and offset as the EHR.
with instances as (
    select * from {{ source('bronze', 'dicom_instances') }}
),

-- Key each patient once, not once per instance.
people as (
    select
        patient_ref,
        person_key(patient_ref) as person_key,
        date_shift_days(patient_ref) as shift_days
    from (select distinct patient_ref from instances where patient_ref is not null)
)

select
    derived_uid(i.sop_instance_uid) as instance_uid,
    derived_uid(i.series_instance_uid) as series_uid,
    derived_uid(i.study_instance_uid) as study_uid,
    pseudonym('accession', i.accession_number) as accession_key,
    p.person_key,
    coalesce(p.shift_days, 0) as shift_days,
    (i.patient_ref in (select mrn from {{ ref('int_patient_identity') }})) as person_in_ehr,
    i.modality,
    i.sop_class_uid,
    i.transfer_syntax_uid,
    i.body_part,
    i.manufacturer,
    i.manufacturer_model,
    i.study_description,
    i.series_description,
    i.series_number,
    i.instance_number,
    i.rows,
    i.columns,
    i.pixel_spacing,
    i.slice_thickness,
    i.number_of_frames,
    i.study_date,
    try_strptime({{ dicom_str('00080021') }}, '%Y%m%d')::date as series_date,
    to_json(list_filter(flatten([
        {{ dicom_name_parts('00100010') }},
        {{ dicom_name_parts('00080090') }},
        {{ dicom_name_parts('00081060') }},
        {{ dicom_name_parts('00081070') }},
        [i.patient_ref, i.accession_number, {{ dicom_str('00080080') }},
         {{ dicom_str('00081010') }}, {{ dicom_str('00181000') }}]
    ]), lambda x: x is not null and length(x) >= 2)) as phi_values,
    i.ingested_at,
    i.batch_id,
    i.source_sha256
from instances i
left join people p using (patient_ref)
