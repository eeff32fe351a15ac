-- What was paid for each order, over all its payments (ephemeral: inlined where used).
select
    order_id,
    count(*) as number_of_payments,
    sum(amount) as total_amount
from {{ ref('stg_payments') }}
group by order_id
