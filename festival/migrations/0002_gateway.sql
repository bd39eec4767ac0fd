-- The partner's own event id (NIX `id`, REDETV!PLUS `event_id`), so that an event redelivered
-- under a new `webhook-id` is recognised as the same event. NULL where the body has no single id
-- (a PIX callback may carry several PIX).
ALTER TABLE inbox ADD COLUMN partner_event_id text;
CREATE UNIQUE INDEX inbox_partner_event ON inbox (partner, partner_event_id)
    WHERE partner_event_id IS NOT NULL;

-- Every PIX seen in a callback, matched or not, so that a PIX sent again changes nothing.
CREATE TABLE pix_received (
    end_to_end_id text        PRIMARY KEY,
    txid          text,
    delivery_id   text        NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now()
);
