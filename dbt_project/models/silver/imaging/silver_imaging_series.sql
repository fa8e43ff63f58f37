{{ config(alias='imaging_series', meta={'dagster': {'group': 'imaging'}}) }}
-- De-identified DICOM series: one row per derived Series Instance UID. Descriptions are
-- kept cleaned of the person's identifiers (PS3.15 Clean Descriptors Option), dates
-- shifted per person. Lineage: the most recently ingested instance of the series.
select
    series_uid,
    any_value(study_uid) as study_uid,
    any_value(person_key) as person_key,
    any_value(modality) as modality,
    any_value(body_part) as body_part,
    scrub_text(any_value(series_description), any_value(phi_values), any_value(shift_days))
        as series_description,
    any_value(series_number) as series_number,
    (any_value(series_date) + any_value(shift_days) * interval 1 day)::date as series_date,
    any_value(manufacturer) as manufacturer,
    any_value(manufacturer_model) as manufacturer_model,
    count(*) as number_of_instances,
    arg_max(batch_id, ingested_at) as batch_id,
    arg_max(source_sha256, ingested_at) as source_sha256
from {{ ref('int_dicom_instance') }}
where series_uid is not null
group by series_uid
