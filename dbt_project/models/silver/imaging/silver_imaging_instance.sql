{{ config(alias='imaging_instance', meta={'dagster': {'group': 'imaging'}}) }}
-- De-identified DICOM instances (PS3.15 Basic Profile, see README "Imaging"): UIDs
-- replaced by derived UIDs, the patient by person_key; only technical attributes kept.
select
    instance_uid,
    series_uid,
    study_uid,
    person_key,
    modality,
    sop_class_uid,
    transfer_syntax_uid,
    instance_number,
    rows,
    columns,
    pixel_spacing,
    slice_thickness,
    number_of_frames,
    batch_id,
    source_sha256
from {{ ref('int_dicom_instance') }}
where instance_uid is not null
