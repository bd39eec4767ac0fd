-- What the subscription flow stores beyond migration 0004.

-- The state machine's fact behind each history row (`created`, `payment_confirmed`, ...).
ALTER TABLE subscription_history ADD COLUMN fact text;

-- The `subscriptions/changed` event the wanted entitlement was last recorded from, so that a push
-- REDETV!PLUS rejects can be dead-lettered against it and replayed by an operator.
ALTER TABLE entitlement_pushes ADD COLUMN event_id uuid;

-- REDETV!PLUS sends `user.updated` by user id, without the subscription.
ALTER TABLE customers ADD COLUMN user_id text;
CREATE INDEX customers_user ON customers (user_id) WHERE user_id IS NOT NULL;

-- The expiry job looks for subscriptions whose access ended.
CREATE INDEX subscriptions_access_due ON subscriptions (access_until)
    WHERE status IN ('active', 'past_due', 'cancelled');
