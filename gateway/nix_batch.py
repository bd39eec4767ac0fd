"""Group commit of NIX charge events that carry no PIX txid (card, boleto, and most charge events).

Requests queue their prepared rows. A few writer tasks each take whatever is queued and record it
with one statement that writes the inbox, customers, charges, outbox and deliveries, and
PostgreSQL runs that statement as one transaction. Each request gets its response only after
that commit, so a 2xx still means the delivery is in PostgreSQL. The batch shares one commit and
one round trip. The statement also keeps the outbox trigger silent, so the commit does not wait
for other notifying commits, and the writer wakes the relay after it (`festival.wakeups`).

Events with a txid keep the per-request transaction of `gateway.nix_events`, because they take an
advisory lock per txid and may release waiting PIX.
"""

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
from opentelemetry import context as otel_context

from broker import topics
from festival import wakeups
from festival.outbox import Outbox, envelope_for
from gateway.inbox import IngestResult, stored_event_ids
from gateway.intake import SignedDelivery
from gateway.nix_events import ingest_nix_event, translate
from gateway.nix_pix import SOURCE
from schemas.nix import NixEvent

logger = logging.getLogger(__name__)

# NOTE: sizes chosen by a few runs of bench/ingest.py on a 2-core machine, not tuned further.
MAX_BATCH = 128
WRITERS = 4

# Rows skipped by `ON CONFLICT DO NOTHING` on the inbox were recorded before: only the rows the
# inbox returns go on to the other tables. Customers and charges are written in key order, so two
# batches take their shared row locks in the same order. A deadlock that happens anyway, like any
# other database error, makes the writer record that batch one event per transaction.
# PostgreSQL fires the outbox's statement trigger after the whole statement, so the setting made
# while the inbox insert reads `input` is in place by then.
RECORD_BATCH = """
WITH input AS (
    SELECT * FROM unnest(
        $1::text[], $2::timestamptz[], $3::bytea[], $4::text[], $5::text[], $6::text[], $7::text[],
        $8::numeric[], $9::timestamptz[], $10::boolean[], $11::text[], $12::text[], $13::text[],
        $14::text[], $15::uuid[], $16::text[], $17::text[]
    ) WITH ORDINALITY AS t(delivery_id, signed_at, body, partner_event_id, charge_id, subscription_ref,
                           method, amount, created_at, has_customer, name, email, cpf, phone,
                           event_id, topic, envelope, ordinal)
    WHERE set_config('festival.defer_notify', $22, true) IS NOT NULL
), delivery AS (
    INSERT INTO inbox (partner, delivery_id, endpoint, signed_at, body, event_ids, partner_event_id)
    SELECT 'nix', delivery_id, $18, signed_at, body,
           CASE WHEN event_id IS NULL THEN '{}'::uuid[] ELSE ARRAY[event_id] END, partner_event_id
    FROM input ORDER BY ordinal
    ON CONFLICT DO NOTHING
    RETURNING delivery_id
), accepted AS (
    SELECT input.* FROM input JOIN delivery USING (delivery_id)
), customer AS (
    INSERT INTO customers AS known (subscription_ref, name, email, cpf, phone)
    SELECT DISTINCT ON (subscription_ref) subscription_ref, name, email, cpf, phone
    FROM accepted WHERE has_customer ORDER BY subscription_ref, ordinal DESC
    ON CONFLICT (subscription_ref) DO UPDATE SET
        name = coalesce(EXCLUDED.name, known.name),
        email = coalesce(EXCLUDED.email, known.email),
        cpf = coalesce(EXCLUDED.cpf, known.cpf),
        phone = coalesce(EXCLUDED.phone, known.phone),
        updated_at = now()
    WHERE (known.name, known.email, known.cpf, known.phone)
        IS DISTINCT FROM (coalesce(EXCLUDED.name, known.name), coalesce(EXCLUDED.email, known.email),
                          coalesce(EXCLUDED.cpf, known.cpf), coalesce(EXCLUDED.phone, known.phone))
), charge AS (
    INSERT INTO charges (charge_id, subscription_ref, method, amount, pix_txid, created_at)
    SELECT DISTINCT ON (charge_id) charge_id, subscription_ref, method, amount, NULL, created_at
    FROM accepted ORDER BY charge_id, ordinal
    ON CONFLICT DO NOTHING
), event AS (
    INSERT INTO outbox (event_id, topic, envelope)
    SELECT event_id, topic, envelope::jsonb FROM accepted WHERE event_id IS NOT NULL ORDER BY ordinal
), tracked AS (
    INSERT INTO deliveries (event_id, consumer, due_at)
    SELECT pending.event_id, pending.consumer, $21
    FROM unnest($19::uuid[], $20::text[]) AS pending(event_id, consumer)
    JOIN accepted USING (event_id)
)
SELECT delivery_id FROM delivery
"""


@dataclass
class _Item:
    delivery: SignedDelivery
    event: NixEvent
    event_id: UUID | None
    topic: str | None
    # The envelope as JSON text: pydantic serialises it faster than the pool's `json.dumps` codec.
    envelope: str | None
    future: asyncio.Future[IngestResult]
    trace_context: otel_context.Context


class NixBatchWriter:
    """Owns the writer tasks; `submit` returns once the event's batch has committed."""

    def __init__(self, pool: asyncpg.Pool, outbox: Outbox) -> None:
        self.pool = pool
        self.outbox = outbox
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._write_forever(), name=f"nix-batch-writer-{index}") for index in range(WRITERS)]
        logger.info("nix batch writer started writers=%d max_batch=%d", WRITERS, MAX_BATCH)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        while not self._queue.empty():
            item = self._queue.get_nowait()
            item.future.set_exception(RuntimeError("gateway stopping: NIX event not recorded"))
        logger.info("nix batch writer stopped")

    async def submit(self, delivery: SignedDelivery, event: NixEvent) -> IngestResult:
        canonical = translate(event)
        envelope = envelope_for(canonical, source=SOURCE, subject=event.data.charge_id) if canonical else None
        item = _Item(
            delivery=delivery,
            event=event,
            event_id=envelope.id if envelope else None,
            topic=topics.absolute(self.outbox.topic_root, canonical.TOPIC) if canonical else None,
            envelope=envelope.model_dump_json(exclude_none=True) if envelope else None,
            future=asyncio.get_running_loop().create_future(),
            trace_context=otel_context.get_current(),
        )
        self._queue.put_nowait(item)
        return await item.future

    async def _write_forever(self) -> None:
        while True:
            batch = self._fill_batch(await self._queue.get())
            try:
                # While more events are queued the writer keeps its connection for the next batch,
                # which saves the reset round trip asyncpg makes when a connection goes back to the pool.
                async with self.pool.acquire() as connection:
                    while True:
                        await self._write(connection, batch)
                        if self._queue.empty():
                            break
                        batch = self._fill_batch(self._queue.get_nowait())
            except Exception as error:  # every waiting request must get a response, so nothing escapes the loop
                logger.exception("nix batch failed size=%d", len(batch))
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(error)

    def _fill_batch(self, first: _Item) -> list[_Item]:
        batch = [first]
        while len(batch) < MAX_BATCH and not self._queue.empty():
            batch.append(self._queue.get_nowait())
        return batch

    async def _write(self, connection: asyncpg.Connection, batch: list[_Item]) -> None:
        unique, repeated = _split_repeats(batch)
        try:
            with wakeups.deferred() as channels:
                recorded = await self._record(connection, unique)
        except asyncpg.PostgresError as error:
            # A deadlock, or one event that passed validation but that PostgreSQL rejects: record
            # each event in its own transaction, so only the bad one fails.
            logger.warning("nix batch failed size=%d error=%r; recording one by one", len(unique), error)
            await self._record_one_by_one(unique)
            recorded = None

        if recorded is not None:
            for item in unique:
                if item.delivery.webhook_id in recorded:
                    item.future.set_result(IngestResult([item.event_id] if item.event_id else [], duplicate=False))
                else:
                    repeated.append(item)
            # The responses go out while the relay's wakeup is on its way: both follow the commit.
            await wakeups.send(connection, channels)
        await self._answer_duplicates(connection, repeated)

    async def _record(self, connection: asyncpg.Connection, items: list[_Item]) -> set[str]:
        rows = [_row(item) for item in items]
        columns = list(zip(*rows)) if rows else [[] for _ in range(17)]
        consumers_by_event = [
            (item.event_id, consumer)
            for item in items
            if item.event_id is not None
            for consumer in topics.CONSUMERS_BY_TOPIC.get(topics.relative_to(self.outbox.topic_root, item.topic or ""), ())
        ]
        due_at = datetime.now(UTC) + timedelta(seconds=self.outbox.redelivery_after)

        # The statement's database span joins the first request's trace; one span cannot have
        # several parents, and the others' envelopes still carry their own trace context.
        token = otel_context.attach(items[0].trace_context)
        try:
            result = await connection.fetch(
                RECORD_BATCH,
                *[list(column) for column in columns],
                "/webhooks/nix",
                [event_id for event_id, _ in consumers_by_event],
                [consumer for _, consumer in consumers_by_event],
                due_at,
                wakeups.defer_setting(),
            )
        finally:
            otel_context.detach(token)
        logger.debug("nix batch recorded size=%d accepted=%d", len(items), len(result))
        recorded = {row["delivery_id"] for row in result}
        if any(item.event_id is not None and item.delivery.webhook_id in recorded for item in items):
            wakeups.request(wakeups.OUTBOX_CHANNEL)
        return recorded

    async def _record_one_by_one(self, items: list[_Item]) -> None:
        for item in items:
            token = otel_context.attach(item.trace_context)
            try:
                item.future.set_result(await ingest_nix_event(self.pool, self.outbox, item.delivery, item.event))
            except Exception as error:
                logger.exception("nix event not recorded webhook_id=%s", item.delivery.webhook_id)
                item.future.set_exception(error)
            finally:
                otel_context.detach(token)

    async def _answer_duplicates(self, connection: asyncpg.Connection, items: list[_Item]) -> None:
        for item in items:
            event_ids = await stored_event_ids(connection, item.delivery, item.event.id)
            logger.info("nix event already applied webhook_id=%s nix_event_id=%s", item.delivery.webhook_id, item.event.id)
            item.future.set_result(IngestResult(event_ids, duplicate=True))


def _split_repeats(batch: list[_Item]) -> tuple[list[_Item], list[_Item]]:
    """Keep the first item per webhook-id and NIX event id; later copies get the duplicate response.

    Two copies in one statement would both join the single inbox row that was inserted.
    """
    seen_deliveries: set[str] = set()
    seen_events: set[str] = set()
    unique: list[_Item] = []
    repeated: list[_Item] = []
    for item in batch:
        if item.delivery.webhook_id in seen_deliveries or item.event.id in seen_events:
            repeated.append(item)
            continue
        seen_deliveries.add(item.delivery.webhook_id)
        seen_events.add(item.event.id)
        unique.append(item)
    return unique, repeated


def _row(item: _Item) -> tuple[Any, ...]:
    data = item.event.data
    customer = data.customer
    return (
        item.delivery.webhook_id,
        item.delivery.signed_at,
        item.delivery.body,
        item.event.id,
        data.charge_id,
        data.subscription_ref,
        data.method,
        data.amount,
        item.event.created_at,
        customer is not None,
        customer.name if customer else None,
        customer.email if customer else None,
        customer.cpf if customer else None,
        customer.phone if customer else None,
        item.event_id,
        item.topic,
        item.envelope,
    )
