-- An order's amount is the sum of its amounts per payment method: a row here is an order
-- whose payments were split wrongly.
select
    order_id,
    amount,
    credit_card_amount + coupon_amount + bank_transfer_amount + gift_card_amount as sum_of_methods
from {{ ref('orders') }}
where amount <> credit_card_amount + coupon_amount + bank_transfer_amount + gift_card_amount
