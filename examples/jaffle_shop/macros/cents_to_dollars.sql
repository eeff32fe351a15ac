{#
    Converts an amount in cents to dollars. Dividing by 100.0 keeps the cents on engines that
    divide integers as integers (PostgreSQL); the cast fixes the type on every engine.
#}
{% macro cents_to_dollars(column_name) -%}
    cast({{ column_name }} / 100.0 as numeric(16, 2))
{%- endmacro %}
