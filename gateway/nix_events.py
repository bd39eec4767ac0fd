"""Ingest of NIX charge events: translation into canonical payment events and the one
transaction that records the delivery, the customer, the charge and the events.
"""

import logging
from uuid import UUID

import asyncpg
import stamina

from broker.envelope import Envelope
from festival import wakeups
from festival.outbox import Outbox, envelope_for
from gateway.inbox import AlreadyRecorded, IngestResult, stored_event_ids
from gateway.intake import SignedDelivery
from gateway.nix_pix import LOCK_TXIDS, SOURCE, confirmation
from schemas.events import EventData, PaymentConfirmed, PaymentFailed, PaymentRefunded
from schemas.nix import NixEvent
from schemas.pix import Pix

logger = logging.getLogger(__name__)

# One round trip for the inbox, the customer, the charge and the PIX that waited for it. A charge
# already known is left as it is. The whole transaction is rolled back when `recorded` is false.
# It also sets `festival.defer_notify` for the outbox inserts that follow (`festival.wakeups`).
# NOTE: a new charge whose txid another charge already has is not recorded, and no error is raised.
RECORD_EVENT = """
WITH delivery AS (
    INSERT INTO inbox (partner, delivery_id, endpoint, signed_at, body, event_ids, partner_event_id)
    VALUES ($1, $2, $3, $4, $5, $6, $7)
    ON CONFLICT DO NOTHING
    RETURNING 1
), customer AS (
    INSERT INTO customers AS known (subscription_ref, name, email, cpf, phone)
    SELECT $9, $14, $15, $16, $17 WHERE $13::boolean
    ON CONFLICT (subscription_ref) DO UPDATE SET
        name = coalesce(EXCLUDED.name, known.name),
        email = coalesce(EXCLUDED.email, known.email),
        cpf = coalesce(EXCLUDED.cpf, known.cpf),
        phone = coalesce(EXCLUDED.phone, known.phone),
        updated_at = now()
    -- Every event repeats the customer; skip the write (and its dead row) when nothing changed.
    WHERE (known.name, known.email, known.cpf, known.phone)
        IS DISTINCT FROM (coalesce(EXCLUDED.name, known.name), coalesce(EXCLUDED.email, known.email),
                          coalesce(EXCLUDED.cpf, known.cpf), coalesce(EXCLUDED.phone, known.phone))
), charge AS (
    INSERT INTO charges (charge_id, subscription_ref, method, amount, pix_txid, created_at)
    VALUES ($8, $9, $10, $11, $12, $18)
    ON CONFLICT DO NOTHING
    RETURNING pix_txid
), released AS (
    DELETE FROM pending_pix WHERE txid = (SELECT pix_txid FROM charge)
    RETURNING payload
)
SELECT EXISTS (SELECT FROM delivery) AS recorded,
       coalesce((SELECT array_agg(payload) FROM released), '{}') AS released,
       set_config('festival.defer_notify', $19, true) AS defer_notify
"""

ADD_EVENT_IDS = "UPDATE inbox SET event_ids = event_ids || $3::uuid[] WHERE partner = $1 AND delivery_id = $2"


def translate(event: NixEvent) -> EventData | None:
    """Return the canonical event of a NIX event; `charge.created` has none of its own."""
    data = event.data
    common = {"charge_id": data.charge_id, "subscription_ref": data.subscription_ref}

    if event.type == "charge.paid":
        assert data.paid_at is not None  # checked by NixEvent
        return PaymentConfirmed(
            **common,
            amount=data.amount,
            method=data.method,
            paid_at=data.paid_at,
            pix_end_to_end_id=data.pix.endToEndId if data.pix else None,
        )
    if event.type == "charge.failed":
        return PaymentFailed(
            **common, amount=data.amount, method=data.method, failed_at=event.created_at, reason=data.failure_reason
        )
    if event.type == "charge.refunded":
        assert data.refund is not None  # checked by NixEvent
        return PaymentRefunded(
            **common,
            kind="refund",
            refund_id=data.refund.id,
            amount=data.refund.amount,
            status=data.refund.status,
            occurred_at=event.created_at,
        )
    if event.type == "charge.chargeback":
        # A chargeback reverses the whole charge unless NIX names a partial one in data.refund.
        return PaymentRefunded(
            **common,
            kind="chargeback",
            refund_id=data.refund.id if data.refund else f"chargeback-{data.charge_id}",
            amount=data.refund.amount if data.refund else data.amount,
            status="CHARGEBACK",
            occurred_at=event.created_at,
        )
    return None


@stamina.retry(on=asyncpg.DeadlockDetectedError, attempts=3)
async def ingest_nix_event(
    pool: asyncpg.Pool, outbox: Outbox, delivery: SignedDelivery, event: NixEvent
) -> IngestResult:
    """Record a NIX event and its canonical events in one transaction; a redelivery changes nothing."""
    canonical = translate(event)
    entries: list[tuple[str, Envelope]] = []
    if canonical is not None:
        entries.append((canonical.TOPIC, envelope_for(canonical, source=SOURCE, subject=event.data.charge_id)))

    # The commit sends no NOTIFY, which would make it wait for other commits (`festival.wakeups`).
    # The relay is woken after the commit, before the response.
    with wakeups.deferred() as channels:
        async with pool.acquire() as connection:
            try:
                async with connection.transaction():
                    entries += await _record(connection, delivery, event, [envelope.id for _, envelope in entries])
                    await outbox.enqueue_envelopes(connection, entries)
            except AlreadyRecorded as duplicate:
                logger.info("nix event already applied webhook_id=%s nix_event_id=%s", delivery.webhook_id, event.id)
                return IngestResult(duplicate.event_ids, duplicate=True)
            await wakeups.send(connection, channels)

    logger.debug(
        "nix event accepted webhook_id=%s nix_event_id=%s type=%s charge_id=%s events=%d",
        delivery.webhook_id, event.id, event.type, event.data.charge_id, len(entries),
    )
    return IngestResult([envelope.id for _, envelope in entries], duplicate=False)


async def _record(
    connection: asyncpg.Connection, delivery: SignedDelivery, event: NixEvent, event_ids: list[UUID]
) -> list[tuple[str, Envelope]]:
    """Run RECORD_EVENT; return the confirmations of PIX that were waiting for this charge."""
    data = event.data
    txid = event.txid
    if txid:
        await connection.execute(LOCK_TXIDS, [txid])

    customer = data.customer
    row = await connection.fetchrow(
        RECORD_EVENT,
        delivery.partner, delivery.webhook_id, delivery.endpoint, delivery.signed_at, delivery.body, event_ids, event.id,
        data.charge_id, data.subscription_ref, data.method, data.amount, txid,
        customer is not None,
        customer.name if customer else None,
        customer.email if customer else None,
        customer.cpf if customer else None,
        customer.phone if customer else None,
        event.created_at,
        wakeups.defer_setting(),
    )
    if not row["recorded"]:
        raise AlreadyRecorded(await stored_event_ids(connection, delivery, event.id))

    released = [
        envelope_for(
            confirmation(data.charge_id, data.subscription_ref, data.amount, Pix.model_validate(payload)),
            source=SOURCE,
            subject=data.charge_id,
        )
        for payload in row["released"]
    ]
    if released:
        logger.info("pix applied to its charge charge_id=%s txid=%s count=%d", data.charge_id, txid, len(released))
        await connection.execute(
            ADD_EVENT_IDS, delivery.partner, delivery.webhook_id, [envelope.id for envelope in released]
        )
    return [(PaymentConfirmed.TOPIC, envelope) for envelope in released]
