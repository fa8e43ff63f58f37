{# Small helpers for reading FHIR JSON held as text in bronze. #}
{% macro fhir_str(path) -%}
  json_extract_string(r, '{{ path }}')
{%- endmacro %}

{# The first coding's code/display of a CodeableConcept at `path`. #}
{% macro fhir_code(path) -%}
  json_extract_string(r, '{{ path }}.coding[0].code')
{%- endmacro %}

{% macro fhir_display(path) -%}
  coalesce(json_extract_string(r, '{{ path }}.coding[0].display'), json_extract_string(r, '{{ path }}.text'))
{%- endmacro %}

{# A FHIR date or dateTime → DATE shifted by the person's offset. #}
{% macro shifted_date(expr, days='shift_days') -%}
  (try_cast(left({{ expr }}, 10) as date) + {{ days }} * interval 1 day)::date
{%- endmacro %}
