{# Schemas are the lake's layers (bronze, silver, gold), not `<target>_<layer>`. #}
{% macro generate_schema_name(custom_schema_name, node) -%}
  {{ custom_schema_name if custom_schema_name else target.schema }}
{%- endmacro %}

{# Staging Parquet is named after the table so two layers never collide. #}
{% macro external_location(relation, config) -%}
  {{ adapter.external_root() }}/{{ relation.schema }}__{{ relation.identifier }}.parquet
{%- endmacro %}
