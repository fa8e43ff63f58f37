-- Each FHIR ImagingStudy with the EHR Procedure that records the same exam (same
-- encounter, same code; Synthea writes both), or procedure_id null when the EHR has none.
-- The OMOP imaging extension points every image_occurrence at a procedure_occurrence:
-- studies without one are registered as procedures in gold.procedure_occurrence.
with studies as (
    select * from {{ ref('silver_imaging_study_fhir') }}
),

procedures as (
    select procedure_id, encounter_id, code, code_system from {{ ref('silver_procedure') }}
)

select
    s.imaging_study_id,
    s.study_uid,
    s.accession_key,
    s.person_key,
    s.encounter_id,
    s.procedure_code,
    s.procedure_system,
    s.started_date,
    s.started_datetime,
    s.batch_id,
    s.source_sha256,
    min(p.procedure_id) as procedure_id  -- a repeated exam in one encounter: any one of them
from studies s
left join procedures p
    on p.encounter_id = s.encounter_id
    and p.code = s.procedure_code
    and p.code_system is not distinct from s.procedure_system
group by all
