{# A DICOM JSON model attribute's first value, by tag (e.g. '00080080'). #}
{% macro dicom_str(tag) -%}
  json_extract_string(header, '$."{{ tag }}".Value[0]')
{%- endmacro %}

{# The parts of a DICOM person name (PN) attribute: family, given, middle... #}
{% macro dicom_name_parts(tag) -%}
  string_split(coalesce(json_extract_string(header, '$."{{ tag }}".Value[0].Alphabetic'), ''), '^')
{%- endmacro %}

{# Free text of FHIR resource `r` scrubbed of the person's identifiers (`phi_values`, JSON
   from int_patient_identity) and of those the resource names about itself: accession
   numbers, performer / custodian (institution) and interpreter names, as DICOM PS3.15 removes. #}
{% macro scrub_fhir_text(text, phi_values='phi_values', days='shift_days') -%}
  scrub_text({{ text }}, to_json(list_concat(coalesce(({{ phi_values }})::varchar[], []), flatten([
      json_extract_string(r, '$.identifier[*].value'),
      json_extract_string(r, '$.performer[*].display'),
      [json_extract_string(r, '$.custodian.display')],
      json_extract_string(r, '$.resultsInterpreter[*].display')
  ]))), {{ days }})
{%- endmacro %}
