"""Ingest of the Banco Central's API Pix callbacks that NIX forwards.

Each PIX is matched to its charge by `txid`. A PIX whose charge is not known yet waits in
`pending_pix` until the charge is recorded (see `gateway.nix_events`). Both sides take a
transaction-scoped advisory lock per txid first, so that a PIX and its charge arriving at the
same moment cannot each miss the other.
"""

import logging
from decimal import Decimal
from typing import Any

import asyncpg
import stamina

from broker.envelope import Envelope
from festival import wakeups
from festival.outbox import Outbox, envelope_for
from gateway.inbox import AlreadyRecorded, IngestResult, record_delivery, stored_event_ids
from gateway.intake import SignedDelivery
from schemas.events import PaymentConfirmed
from schemas.pix import Pix, PixCallback

logger = logging.getLogger(__name__)

SOURCE = "/partners/nix"

LOCK_TXIDS = """
SELECT pg_advisory_xact_lock(hashtextextended(txid, 0))
FROM (SELECT DISTINCT txid FROM unnest($1::text[]) AS txid ORDER BY txid) AS sorted
"""

# Only PIX never seen before come back, with their charge if its txid is known.
RECORD_PIX = """
WITH seen AS (
    INSERT INTO pix_received (end_to_end_id, txid, delivery_id)
    SELECT end_to_end_id, txid, $3 FROM unnest($1::text[], $2::text[]) AS incoming (end_to_end_id, txid)
    ON CONFLICT DO NOTHING
    RETURNING end_to_end_id, txid
)
SELECT seen.end_to_end_id, charges.charge_id, charges.subscription_ref, charges.amount
FROM seen LEFT JOIN charges ON charges.pix_txid = seen.txid
"""

INSERT_PENDING = """
INSERT INTO pending_pix (end_to_end_id, txid, payload)
SELECT * FROM unnest($1::text[], $2::text[], $3::jsonb[])
ON CONFLICT DO NOTHING
"""


def pending_payload(pix: Pix) -> dict[str, Any]:
    """Keep only what a later confirmation needs; `infoPagador` may hold personal data."""
    return {"endToEndId": pix.endToEndId, "txid": pix.txid, "valor": str(pix.valor), "horario": pix.horario.isoformat()}


def confirmation(charge_id: str, subscription_ref: str, charge_amount: Decimal, pix: Pix) -> PaymentConfirmed:
    """Build the PaymentConfirmed of a PIX matched to its charge, with the amount the PIX paid."""
    if pix.valor != charge_amount:
        logger.warning(
            "pix amount differs from charge charge_id=%s end_to_end_id=%s pix_amount=%s charge_amount=%s",
            charge_id, pix.endToEndId, pix.valor, charge_amount,
        )
    return PaymentConfirmed(
        charge_id=charge_id,
        subscription_ref=subscription_ref,
        amount=pix.valor,
        method="pix",
        paid_at=pix.horario,
        pix_end_to_end_id=pix.endToEndId,
    )


@stamina.retry(on=asyncpg.DeadlockDetectedError, attempts=3)
async def ingest_pix_callback(
    pool: asyncpg.Pool, outbox: Outbox, delivery: SignedDelivery, callback: PixCallback
) -> IngestResult:
    """Record a PIX callback and confirm every new PIX whose charge is known, in one transaction."""
    by_end_to_end_id: dict[str, Pix] = {}
    for pix in callback.pix:
        by_end_to_end_id.setdefault(pix.endToEndId, pix)
    txids = [pix.txid for pix in by_end_to_end_id.values() if pix.txid]

    # The commit sends no NOTIFY, which would make it wait for other commits (`festival.wakeups`).
    # The relay is woken after the commit, before the response.
    with wakeups.deferred() as channels:
        async with pool.acquire() as connection:
            try:
                async with connection.transaction():
                    result = await _ingest(connection, outbox, delivery, by_end_to_end_id, txids)
            except AlreadyRecorded as duplicate:
                logger.info("pix callback already applied webhook_id=%s", delivery.webhook_id)
                return IngestResult(duplicate.event_ids, duplicate=True)
            await wakeups.send(connection, channels)
    return result


async def _ingest(
    connection: asyncpg.Connection,
    outbox: Outbox,
    delivery: SignedDelivery,
    by_end_to_end_id: dict[str, Pix],
    txids: list[str],
) -> IngestResult:
    if txids:
        await connection.execute(LOCK_TXIDS, txids)

    new_rows = await connection.fetch(
        RECORD_PIX, list(by_end_to_end_id), [pix.txid for pix in by_end_to_end_id.values()], delivery.webhook_id
    )
    if not new_rows:
        # A redelivery, or a new delivery of PIX already seen: either way nothing changes.
        raise AlreadyRecorded(await stored_event_ids(connection, delivery))

    envelopes: list[Envelope] = []
    waiting: list[Pix] = []
    for row in new_rows:
        pix = by_end_to_end_id[row["end_to_end_id"]]
        if row["charge_id"] is None:
            waiting.append(pix)
            continue
        event = confirmation(row["charge_id"], row["subscription_ref"], row["amount"], pix)
        envelopes.append(envelope_for(event, source=SOURCE, subject=row["charge_id"]))

    await _keep_waiting(connection, delivery, waiting)

    if not await record_delivery(connection, delivery, [envelope.id for envelope in envelopes]):
        raise AlreadyRecorded(await stored_event_ids(connection, delivery))
    await outbox.enqueue_envelopes(connection, [(PaymentConfirmed.TOPIC, envelope) for envelope in envelopes])

    logger.debug(
        "pix callback accepted webhook_id=%s confirmed=%d waiting=%d", delivery.webhook_id, len(envelopes), len(waiting)
    )
    return IngestResult([envelope.id for envelope in envelopes], duplicate=False)


async def _keep_waiting(connection: asyncpg.Connection, delivery: SignedDelivery, waiting: list[Pix]) -> None:
    with_txid = [pix for pix in waiting if pix.txid]
    for pix in waiting:
        if pix.txid:
            logger.info("pix waiting for its charge webhook_id=%s end_to_end_id=%s txid=%s", delivery.webhook_id, pix.endToEndId, pix.txid)
        else:
            # NOTE: a PIX without txid (a transfer to the key, not a charge) can never be matched.
            logger.warning("pix without txid ignored webhook_id=%s end_to_end_id=%s", delivery.webhook_id, pix.endToEndId)

    if with_txid:
        await connection.execute(
            INSERT_PENDING,
            [pix.endToEndId for pix in with_txid],
            [pix.txid for pix in with_txid],
            [pending_payload(pix) for pix in with_txid],
        )
