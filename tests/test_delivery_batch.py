"""Deliveries applied together: one transaction for the events that arrive at once, each applied
once, and a failing event that leaves the others applied."""

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg
import pytest

from broker.envelope import Envelope
from consumers import delivery_batch
from consumers.delivery import DeliveryHandler, DeliveryPolicy, Outcome
from festival import notifications
from festival.db import create_pool
from festival.outbox import Outbox, envelope_for
from festival.settings import Settings
from tests.pipeline import confirmed

TOPIC = "payments/confirmed"


@pytest.fixture
async def logged_pool(settings: Settings) -> AsyncIterator[tuple[asyncpg.Pool, list[str]]]:
    """A pool of one kept connection that appends every statement it sends to the returned list."""
    sent: list[str] = []
    pool = await create_pool(settings.require_database_url(), min_size=1, max_size=1, reset_session=False)
    async with pool.acquire() as connection:
        connection.add_query_logger(lambda record: sent.append(record.query))
    yield pool, sent
    await pool.close()


async def _enqueued(pool: asyncpg.Pool, outbox: Outbox, count: int) -> list[Envelope]:
    envelopes = [envelope_for(confirmed(f"sub-{index}"), source="/tests", subject=f"sub-{index}") for index in range(count)]
    async with pool.acquire() as connection:
        for envelope in envelopes:
            await outbox.enqueue(connection, TOPIC, envelope)
    return envelopes


async def _record(connection: asyncpg.Connection, envelope: Envelope) -> None:
    """Write one visible effect per applied event."""
    await notifications.enqueue(connection, envelope.subject, "payment_confirmed", str(envelope.id))


def _handler(settings: Settings, pool: asyncpg.Pool, apply=_record) -> DeliveryHandler:  # type: ignore[no-untyped-def]
    return DeliveryHandler(
        "payments",
        apply,
        pool,
        Outbox.from_settings(settings),
        DeliveryPolicy(max_attempts=3, retry_after=1.0),
        lock_key=lambda envelope: f"subscription:{envelope.subject}",
    )


async def _deliver_at_once(handler: DeliveryHandler, settings: Settings, envelopes: list[Envelope]) -> list[Outcome]:
    topic = f"{settings.topic_root}/{TOPIC}"
    try:
        return list(await asyncio.gather(*(handler.handle(envelope.to_json(), topic) for envelope in envelopes)))
    finally:
        await handler.close()


async def test_batch_one_transaction(settings: Settings, logged_pool: tuple[asyncpg.Pool, list[str]]) -> None:
    pool, sent = logged_pool
    envelopes = await _enqueued(pool, Outbox.from_settings(settings), 5)
    sent.clear()

    outcomes = await _deliver_at_once(_handler(settings, pool), settings, envelopes)
    await asyncio.sleep(0)

    assert outcomes == [Outcome.APPLIED] * 5
    assert sent.count("BEGIN;") == 1
    assert await pool.fetchval("SELECT count(*) FROM notifications") == 5
    assert await pool.fetchval("SELECT count(*) FROM deliveries WHERE status = 'applied'") == 5


async def test_batch_copies_applied_once(settings: Settings, pool: asyncpg.Pool) -> None:
    [envelope, other] = await _enqueued(pool, Outbox.from_settings(settings), 2)

    outcomes = await _deliver_at_once(_handler(settings, pool), settings, [envelope, other, envelope])

    assert outcomes == [Outcome.APPLIED, Outcome.APPLIED, Outcome.DUPLICATE]
    assert await pool.fetchval("SELECT count(*) FROM notifications WHERE body = $1", str(envelope.id)) == 1


async def test_batch_failure_isolated(settings: Settings, pool: asyncpg.Pool) -> None:
    envelopes = await _enqueued(pool, Outbox.from_settings(settings), 4)
    failing = envelopes[2].id

    async def record_or_fail(connection: asyncpg.Connection, envelope: Envelope) -> None:
        await _record(connection, envelope)
        if envelope.id == failing:
            raise ValueError("evento inválido")

    outcomes = await _deliver_at_once(_handler(settings, pool, record_or_fail), settings, envelopes)

    written = await pool.fetchval("SELECT array_agg(body ORDER BY body) FROM notifications")
    row = await pool.fetchrow("SELECT status, attempts, last_error FROM deliveries WHERE event_id = $1", failing)
    assert outcomes == [Outcome.APPLIED, Outcome.APPLIED, Outcome.FAILED, Outcome.APPLIED]
    assert written == sorted(str(envelope.id) for envelope in envelopes if envelope.id != failing)
    assert row["status"] == "pending"
    assert row["attempts"] == 1
    assert row["last_error"].startswith("ValueError")


async def test_batch_skips_untracked(settings: Settings, pool: asyncpg.Pool) -> None:
    envelopes = await _enqueued(pool, Outbox.from_settings(settings), 2)
    untracked = envelope_for(confirmed("sub-x"), source="/tests", subject="sub-x")

    outcomes = await _deliver_at_once(_handler(settings, pool), settings, [*envelopes, untracked])

    assert outcomes == [Outcome.APPLIED, Outcome.APPLIED, Outcome.UNTRACKED]
    assert await pool.fetchval("SELECT count(*) FROM notifications") == 2


async def test_lock_keys_taken_in_order(settings: Settings, logged_pool: tuple[asyncpg.Pool, list[str]]) -> None:
    pool, sent = logged_pool
    envelopes = await _enqueued(pool, Outbox.from_settings(settings), 3)
    keys: list[list[str]] = []
    async with pool.acquire() as connection:
        connection.add_query_logger(lambda record: keys.append(list(record.args[0])) if "pg_advisory_xact_lock" in record.query else None)

    await _deliver_at_once(_handler(settings, pool), settings, list(reversed(envelopes)))
    await asyncio.sleep(0)

    assert keys == [sorted(f"subscription:{envelope.subject}" for envelope in envelopes)]


async def test_unkeyed_events_alone(settings: Settings, logged_pool: tuple[asyncpg.Pool, list[str]]) -> None:
    pool, sent = logged_pool
    envelopes = await _enqueued(pool, Outbox.from_settings(settings), 3)
    handler = DeliveryHandler(
        "payments", _record, pool, Outbox.from_settings(settings), DeliveryPolicy(3, 1.0), lock_key=lambda _: None
    )
    sent.clear()

    outcomes = await _deliver_at_once(handler, settings, envelopes)
    await asyncio.sleep(0)

    assert outcomes == [Outcome.APPLIED] * 3
    assert sent.count("BEGIN;") == 3


async def test_close_cancels_queued(settings: Settings, pool: asyncpg.Pool) -> None:
    envelopes = await _enqueued(pool, Outbox.from_settings(settings), 2)
    started = asyncio.Event()

    async def hang(connection: asyncpg.Connection, envelope: Envelope) -> None:
        started.set()
        await asyncio.Event().wait()

    handler = _handler(settings, pool, hang)
    topic = f"{settings.topic_root}/{TOPIC}"
    first = asyncio.create_task(handler.handle(envelopes[0].to_json(), topic), name="first-delivery")
    await asyncio.wait_for(started.wait(), timeout=10)
    second = asyncio.create_task(handler.handle(envelopes[1].to_json(), topic), name="second-delivery")
    await asyncio.sleep(0)
    await handler.close()
    results = await asyncio.gather(first, second, return_exceptions=True)

    assert all(isinstance(result, asyncio.CancelledError) for result in results)
    assert await pool.fetchval("SELECT count(*) FROM deliveries WHERE status = 'pending'") == 2



async def test_submit_after_batches_end(monkeypatch: pytest.MonkeyPatch) -> None:
    """An event queued just as every batch task ends still gets a task of its own."""
    monkeypatch.setattr(delivery_batch, "MAX_BATCH", 1)
    gate = asyncio.Event()
    waiting: list[Envelope] = []
    both_waiting = asyncio.Event()

    async def apply_alone(envelope: Envelope, topic: str) -> Outcome:
        waiting.append(envelope)
        if len(waiting) == 2:
            both_waiting.set()
        await gate.wait()
        return Outcome.APPLIED

    batcher = delivery_batch.Batcher(
        "tests", None, _record, apply_alone, Outcome.APPLIED, contextlib.nullcontext, "off"  # type: ignore[arg-type]
    )
    envelopes = [envelope_for(confirmed(f"sub-{index}"), source="/tests", subject=f"sub-{index}") for index in range(3)]
    first = [asyncio.create_task(batcher.submit(envelope, TOPIC, "key")) for envelope in envelopes[:2]]
    await asyncio.wait_for(both_waiting.wait(), timeout=5)

    # Both batch tasks wake and end in the same loop step that first runs the third submit.
    gate.set()
    late = asyncio.create_task(batcher.submit(envelopes[2], TOPIC, "key"))

    assert await asyncio.wait_for(late, timeout=5) == Outcome.APPLIED
    await asyncio.gather(*first)
