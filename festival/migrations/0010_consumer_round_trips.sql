-- Server-side steps of the consumers' delivery transactions that must read after waiting for a
-- subscription's lock. In READ COMMITTED one statement reads from the snapshot taken when it
-- started, so a lock and the reads it protects cannot share a statement. A VOLATILE PL/pgSQL
-- function takes a new snapshot for each statement it runs, which makes the lock and the reads
-- one round trip while they still see what the previous holder of the lock committed.

-- Wait for the subscription's lock, held until the transaction ends, and return its stored
-- evidence (NULL when the subscription has no row). The lock key matches
-- `consumers.subscription_store.LOCK`.
CREATE FUNCTION lock_subscription(p_subscription_ref text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    stored jsonb;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('subscription:' || p_subscription_ref, 0));
    SELECT s.evidence INTO stored FROM subscriptions AS s WHERE s.ref = p_subscription_ref;
    RETURN stored;
END $$;

-- Record a confirmed NIX payment under its subscription's lock; return the status it was stored
-- with (NULL when the charge was confirmed before) and the subscription's evidence. A refund or
-- chargeback settled before the confirmation arrived stores the payment as refunded or charged
-- back at once.
CREATE FUNCTION record_confirmed_payment(
    p_charge_id text,
    p_subscription_ref text,
    p_event_id uuid,
    p_method text,
    p_amount numeric,
    p_paid_at timestamptz
) RETURNS TABLE (status text, evidence jsonb)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    stored_status text;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('subscription:' || p_subscription_ref, 0));

    INSERT INTO payments AS p (charge_id, subscription_ref, event_id, method, amount, status, paid_at)
    SELECT p_charge_id, p_subscription_ref, p_event_id, p_method, p_amount,
           COALESCE((SELECT CASE r.status WHEN 'CHARGEBACK' THEN 'charged_back' ELSE 'refunded' END
                     FROM refunds AS r
                     WHERE r.charge_id = p_charge_id AND r.status IN ('DEVOLVIDO', 'CHARGEBACK')
                     LIMIT 1), 'confirmed'),
           p_paid_at
    ON CONFLICT (charge_id) DO NOTHING
    RETURNING p.status INTO stored_status;

    RETURN QUERY
        SELECT stored_status, (SELECT s.evidence FROM subscriptions AS s WHERE s.ref = p_subscription_ref);
END $$;

-- PostgreSQL holds one database-wide lock from a NOTIFY until the notifying transaction's commit
-- is flushed to disk, so notifying commits wait for each other's flushes. A consumer's delivery
-- transaction sets `festival.defer_notify` and wakes the relay after its commit instead
-- (`festival.wakeups`); every other writer still notifies here.
CREATE OR REPLACE FUNCTION notify_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('festival.defer_notify', true) IS DISTINCT FROM 'on' THEN
        PERFORM pg_notify('festival_outbox', '');
    END IF;
    RETURN NULL;
END $$;
