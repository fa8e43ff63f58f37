{# Rows whose combination of `columns` occurs more than once (dbt has no built-in test
   for compound keys and the project uses no packages). #}
{% test unique_combination(model, columns) %}
select {{ columns | join(', ') }}, count(*) as n
from {{ model }}
group by all
having count(*) > 1
{% endtest %}
