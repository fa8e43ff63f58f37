{# Helpers for the EHR silver and OMOP gold models. #}

{# A SQL-on-FHIR view (dbt source `sof`, compiled from dbt_project/views/<view>.json by the
   medlake plugin, each row carrying its bronze row's patient_ref, batch_id and
   source_sha256) joined to the person's identity: person_key, date shift, and the
   identifier values free text is scrubbed of. #}
{% macro sof_base(view) -%}
    -- lineage: the view reads {{ source('bronze', 'fhir_resources') }}
    select
        v.*,
        i.person_key,
        coalesce(i.shift_days, 0) as shift_days,
        i.phi_values
    from {{ source('sof', view) }} v
    left join {{ ref('int_patient_identity') }} i on i.patient_ref = v.patient_ref
{%- endmacro %}

{# A FHIR dateTime/instant → TIMESTAMP shifted by the person's offset. The wall-clock time
   as recorded (offset dropped), so it always falls on the shifted date below. Works on
   text and on typed values alike. #}
{% macro shifted_ts(expr, days='shift_days') -%}
  (try_cast(replace(left(cast({{ expr }} as varchar), 19), 'T', ' ') as timestamp) + {{ days }} * interval 1 day)
{%- endmacro %}

{# Same, as a DATE (also for FHIR dates without a time). #}
{% macro shifted_day(expr, days='shift_days') -%}
  {{ shifted_date('cast(' ~ expr ~ ' as varchar)', days) }}
{%- endmacro %}

{# A FHIR code system URI → OMOP vocabulary_id (the seed concept_map's key). #}
{% macro vocabulary_id(system) -%}
  case {{ system }}
      when 'http://snomed.info/sct' then 'SNOMED'
      when 'http://loinc.org' then 'LOINC'
      when 'http://www.nlm.nih.gov/research/umls/rxnorm' then 'RxNorm'
      when 'http://hl7.org/fhir/sid/cvx' then 'CVX'
  end
{%- endmacro %}

{# OMOP ids are integers: the first 60 bits of a hex pseudonym, deterministic and stable
   across rebuilds (a 10^-8 collision chance at a million rows; the unique tests watch). #}
{% macro omop_id(hex) -%}
  ('0x' || left({{ hex }}, 15))::bigint
{%- endmacro %}

{# value[x] of an Observation or of one of its components, as the SQL-on-FHIR views split
   it by type: the type present, any numeric value as a number, unit, coded value, and
   the free text scrubbed (it can name the patient). Components carry no dateTime. #}
{% macro observation_value(with_datetime=true) -%}
    case
        when value_quantity is not null then 'Quantity'
        when value_concept_code is not null then 'CodeableConcept'
        when value_string is not null then 'string'
        when value_boolean is not null then 'boolean'
        when value_integer is not null then 'integer'
        {%- if with_datetime %}
        when value_datetime is not null then 'dateTime'
        {%- endif %}
    end as value_type,
    coalesce(try_cast(value_quantity as double), try_cast(value_integer as double)) as value_number,
    value_unit,
    value_unit_code,
    value_concept_code,
    value_concept_system,
    value_concept_display,
    scrub_text(cast(value_string as varchar), phi_values, shift_days) as value_string,
    try_cast(value_boolean as boolean) as value_boolean
{%- endmacro %}
