-- Inbox: every accepted partner delivery, raw, before the answer is sent.
CREATE TABLE inbox (
    partner      text        NOT NULL,
    delivery_id  text        NOT NULL,              -- the `webhook-id` header
    endpoint     text        NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    signed_at    timestamptz NOT NULL,
    body         bytea       NOT NULL,              -- raw bytes as received; holds personal data
    event_ids    uuid[]      NOT NULL DEFAULT '{}',
    PRIMARY KEY (partner, delivery_id)
);

-- Outbox: every canonical event, written in the same transaction as its cause.
CREATE TABLE outbox (
    position     bigserial   PRIMARY KEY,
    event_id     uuid        NOT NULL UNIQUE,
    topic        text        NOT NULL,
    envelope     jsonb       NOT NULL,
    retain       boolean     NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (position) WHERE published_at IS NULL;

CREATE FUNCTION notify_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('festival_outbox', '');
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION notify_outbox();

-- One row per event and consumer that must apply it; the consumer marks it applied in the
-- transaction of its effects, and the relay publishes again what stays pending past due_at.
CREATE TABLE deliveries (
    event_id     uuid        NOT NULL REFERENCES outbox (event_id),
    consumer     text        NOT NULL,
    status       text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'applied', 'dead')),
    attempts     integer     NOT NULL DEFAULT 0,     -- failed handler runs
    publications integer     NOT NULL DEFAULT 0,     -- redeliveries by the relay
    due_at       timestamptz NOT NULL,
    applied_at   timestamptz,
    last_error   text,
    PRIMARY KEY (event_id, consumer)
);
CREATE INDEX deliveries_due ON deliveries (due_at) WHERE status = 'pending';

CREATE TABLE dead_letters (
    id           bigserial   PRIMARY KEY,
    event_id     uuid        NOT NULL REFERENCES outbox (event_id),
    consumer     text        NOT NULL,
    topic        text        NOT NULL,
    error        text        NOT NULL,
    attempts     integer     NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    replayed_at  timestamptz
);
CREATE INDEX dead_letters_open ON dead_letters (created_at) WHERE replayed_at IS NULL;

-- Personal data lives here only, keyed by subscription; events and topics carry ids.
CREATE TABLE customers (
    subscription_ref text        PRIMARY KEY,
    name             text,
    email            text,
    cpf              text,
    phone            text,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE subscriptions (
    ref                text        PRIMARY KEY,   -- REDETV!PLUS subscription id
    user_id            text,
    plan               text        NOT NULL DEFAULT 'mensal' CHECK (plan IN ('mensal', 'anual')),
    status             text        NOT NULL,
    current_period_end timestamptz,
    version            integer     NOT NULL DEFAULT 0,
    last_event_at      timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE subscription_history (
    id               bigserial   PRIMARY KEY,
    subscription_ref text        NOT NULL REFERENCES subscriptions (ref),
    event_id         uuid        NOT NULL,
    from_status      text,
    to_status        text        NOT NULL,
    reason           text        NOT NULL,
    occurred_at      timestamptz NOT NULL,
    recorded_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX subscription_history_ref ON subscription_history (subscription_ref, id);

-- NIX charges as announced by `charge.created` (or first seen on a later event).
CREATE TABLE charges (
    charge_id        text          PRIMARY KEY,
    subscription_ref text          NOT NULL,
    method           text          NOT NULL CHECK (method IN ('pix', 'card', 'boleto')),
    amount           numeric(12,2) NOT NULL CHECK (amount > 0),
    pix_txid         text          UNIQUE,
    created_at       timestamptz   NOT NULL
);

-- PIX callbacks whose txid matches no charge yet; applied when `charge.created` arrives.
CREATE TABLE pending_pix (
    end_to_end_id text        PRIMARY KEY,
    txid          text        NOT NULL,
    payload       jsonb       NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX pending_pix_txid ON pending_pix (txid);

-- Confirmed payments, one per charge, whichever NIX event or PIX callback confirmed it first.
CREATE TABLE payments (
    charge_id        text          PRIMARY KEY,
    subscription_ref text          NOT NULL,
    event_id         uuid          NOT NULL,
    method           text          NOT NULL,
    amount           numeric(12,2) NOT NULL,
    refunded_amount  numeric(12,2) NOT NULL DEFAULT 0,
    status           text          NOT NULL CHECK (status IN ('confirmed', 'refunded', 'charged_back')),
    paid_at          timestamptz   NOT NULL,
    recorded_at      timestamptz   NOT NULL DEFAULT now()
);
CREATE INDEX payments_subscription ON payments (subscription_ref);

CREATE TABLE payment_failures (
    event_id         uuid        PRIMARY KEY,
    charge_id        text        NOT NULL,
    subscription_ref text        NOT NULL,
    reason           text,
    failed_at        timestamptz NOT NULL
);

CREATE TABLE refunds (
    refund_id   text          PRIMARY KEY,
    charge_id   text          NOT NULL,
    amount      numeric(12,2) NOT NULL,
    status      text          NOT NULL CHECK (status IN ('EM_PROCESSAMENTO', 'DEVOLVIDO', 'NAO_REALIZADO', 'CHARGEBACK')),
    updated_at  timestamptz   NOT NULL
);

-- Draw editions; the number space is `series` × 100,000 numbers.
CREATE TABLE draws (
    id            uuid        PRIMARY KEY,
    title         text        NOT NULL,
    status        text        NOT NULL DEFAULT 'scheduled'
                  CHECK (status IN ('scheduled', 'closed', 'drawing', 'completed', 'cancelled')),
    scheduled_at  timestamptz NOT NULL,
    cutoff_at     timestamptz NOT NULL,
    series        integer     NOT NULL CHECK (series BETWEEN 1 AND 1000),
    number_key    bytea       NOT NULL,          -- secret key of the lucky-number permutation
    issued_count  bigint      NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (cutoff_at <= scheduled_at)
);
CREATE INDEX draws_open ON draws (cutoff_at) WHERE status = 'scheduled';

-- Lucky numbers a confirmed payment earns; draw_id stays NULL until a draw is open to issue them.
CREATE TABLE lucky_number_grants (
    charge_id        text        PRIMARY KEY REFERENCES payments (charge_id),
    subscription_ref text        NOT NULL,
    quantity         integer     NOT NULL CHECK (quantity > 0),
    draw_id          uuid        REFERENCES draws (id),
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX lucky_number_grants_waiting ON lucky_number_grants (created_at) WHERE draw_id IS NULL;

CREATE TABLE lucky_numbers (
    draw_id          uuid        NOT NULL REFERENCES draws (id),
    number           bigint      NOT NULL,
    subscription_ref text        NOT NULL,
    charge_id        text        NOT NULL,
    issued_at        timestamptz NOT NULL DEFAULT now(),
    voided_at        timestamptz,
    PRIMARY KEY (draw_id, number)
);
CREATE INDEX lucky_numbers_subscription ON lucky_numbers (subscription_ref);
CREATE INDEX lucky_numbers_charge ON lucky_numbers (charge_id);
