-- What the subscription state machine stores beyond its row in `subscriptions`.

-- The evidence the state is derived from (festival.domain.subscriptions.state_to_json), and the
-- entitlement it implied when stored.
ALTER TABLE subscriptions
    ADD COLUMN evidence     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN access       boolean     NOT NULL DEFAULT false,
    ADD COLUMN access_until timestamptz;

-- Facts the state machine rejected, kept for an operator to review; a redelivery records once.
CREATE TABLE illegal_transitions (
    id               bigserial   PRIMARY KEY,
    subscription_ref text        NOT NULL,
    event_id         text        NOT NULL,
    from_status      text,
    fact             jsonb       NOT NULL,
    reason           text        NOT NULL,
    occurred_at      timestamptz NOT NULL,
    recorded_at      timestamptz NOT NULL DEFAULT now(),
    reviewed_at      timestamptz,
    UNIQUE (subscription_ref, event_id)
);
CREATE INDEX illegal_transitions_open ON illegal_transitions (recorded_at) WHERE reviewed_at IS NULL;

-- Payment facts for subscriptions not seen yet; applied and deleted when the subscription appears.
CREATE TABLE held_payments (
    event_id         text        PRIMARY KEY,
    subscription_ref text        NOT NULL,
    fact             jsonb       NOT NULL,
    occurred_at      timestamptz NOT NULL,
    held_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX held_payments_subscription ON held_payments (subscription_ref, occurred_at);

-- Per subscription, the entitlement REDETV!PLUS should have and the one last sent to it.
CREATE TABLE entitlement_pushes (
    subscription_ref text        PRIMARY KEY,
    user_id          text        NOT NULL,
    version          integer     NOT NULL,   -- subscription version the wanted value comes from
    active           boolean     NOT NULL,
    until            timestamptz NOT NULL,
    reason           text        NOT NULL,
    sent_active      boolean,
    sent_until       timestamptz,
    sent_reason      text,
    sent_at          timestamptz,
    attempts         integer     NOT NULL DEFAULT 0,   -- failed pushes
    last_error       text,
    rejected_at      timestamptz,  -- 404 or another 4xx: not sent again until the wanted value changes
    claimed_until    timestamptz,  -- a pusher is sending it; others skip the row until then
    updated_at       timestamptz NOT NULL DEFAULT now(),
    pending          boolean     GENERATED ALWAYS AS (
        rejected_at IS NULL AND (
            sent_at IS NULL
            OR active IS DISTINCT FROM sent_active
            OR until IS DISTINCT FROM sent_until
            OR reason IS DISTINCT FROM sent_reason)
    ) STORED
);
CREATE INDEX entitlement_pushes_pending ON entitlement_pushes (updated_at) WHERE pending;

-- Messages to subscribers, written in the transaction of their cause and sent by a dispatcher.
CREATE TABLE notifications (
    id               bigserial   PRIMARY KEY,
    subscription_ref text        NOT NULL,
    kind             text        NOT NULL CHECK (kind IN (
                         'payment_confirmed', 'lucky_numbers_issued', 'renewal_failed',
                         'cancelled', 'prize_won')),
    body             text        NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz,
    attempts         integer     NOT NULL DEFAULT 0,
    last_error       text
);
CREATE INDEX notifications_unsent ON notifications (id) WHERE sent_at IS NULL;
