{{
    config(
        materialized='incremental',
        unique_key='order_date',
        tags=['finance']
    )
}}

-- Revenue of shipped and completed orders per day. Incremental: a run after the first one
-- aggregates only the newest day already in the table and the days after it.
with orders as (

    select * from {{ ref('orders') }}
    where status in ('shipped', 'completed')
      and order_date >= cast('{{ var("revenue_since", "2024-01-01") }}' as date)
    {% if is_incremental() %}
      and order_date >= (select max(order_date) from {{ this }})
    {% endif %}

)

select
    order_date,
    count(*) as number_of_orders,
    sum(amount) as revenue
from orders
group by order_date
