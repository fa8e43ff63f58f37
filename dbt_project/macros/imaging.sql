{# A DICOM JSON model attribute's first value, by tag (e.g. '00080080'). #}
{% macro dicom_str(tag) -%}
  json_extract_string(header, '$."{{ tag }}".Value[0]')
{%- endmacro %}

{# The parts of a DICOM person name (PN) attribute: family, given, middle... #}
{% macro dicom_name_parts(tag) -%}
  string_split(coalesce(json_extract_string(header, '$."{{ tag }}".Value[0].Alphabetic'), ''), '^')
{%- endmacro %}

{# Free text of a FHIR resource scrubbed of the person's identifiers (`phi_values`, JSON
   from int_patient_identity) and of the names and numbers the resource holds about itself
   (`named`, a list: accession and other identifiers, performer / custodian (institution) and
   interpreter names — the `named_values` column of the SQL-on-FHIR views), as DICOM PS3.15
   removes them from reports. #}
{% macro scrub_fhir_text(text, named='named_values', phi_values='phi_values', days='shift_days') -%}
  scrub_text({{ text }}, to_json(list_concat(coalesce(({{ phi_values }})::varchar[], []),
                                             coalesce(({{ named }})::varchar[], []))), {{ days }})
{%- endmacro %}
