"""Relay and payments consumer against real PostgreSQL and Mosquitto."""

from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
import pytest

from consumers.payments import PaymentsConsumer
from festival.outbox import envelope_for
from festival.settings import Settings
from schemas.events import EventData, PaymentRefunded
from tests.helpers import wait_until
from tests.pipeline import (
    all_applied,
    confirmed,
    consumer_process,
    create_open_draw,
    create_subscriptions,
    enqueue,
    kill,
    running_consumer,
    running_relay,
    terminate,
)


async def test_confirmed_payment_activates(settings: Settings, pool: asyncpg.Pool) -> None:
    async with pool.acquire() as connection:
        await create_open_draw(connection)
    await create_subscriptions(pool, settings, "sub-1")
    await enqueue(pool, settings, confirmed("sub-1", amount="29.90"))

    async with running_relay(settings, pool), running_consumer("payments", settings, pool):
        await wait_until(lambda: all_applied(pool, "payments"))

    status = await pool.fetchval("SELECT status FROM subscriptions WHERE ref = 'sub-1'")
    numbers = await pool.fetchval("SELECT count(*) FROM lucky_numbers WHERE subscription_ref = 'sub-1'")
    changed = await pool.fetchval(
        "SELECT count(*) FROM outbox WHERE topic LIKE '%/subscriptions/changed' AND envelope->'data'->>'status' = 'active'"
    )
    assert status == "active"
    assert numbers == 2
    assert changed == 1


async def test_relay_marks_published(settings: Settings, pool: asyncpg.Pool) -> None:
    await enqueue(pool, settings, confirmed("sub-1"))

    async with running_relay(settings, pool):
        await wait_until(lambda: _none_unpublished(pool))

    published = await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NOT NULL")
    assert published == 1


async def _none_unpublished(pool: asyncpg.Pool) -> bool:
    return await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0


async def test_duplicate_applied_once(settings: Settings, pool: asyncpg.Pool) -> None:
    await create_subscriptions(pool, settings, "sub-1")
    await enqueue(pool, settings, confirmed("sub-1", charge_id="ch_dup"))

    async with running_relay(settings, pool), running_consumer("payments", settings, pool):
        await wait_until(lambda: all_applied(pool, "payments"))
        # Publish the same event again, as a relay restarted mid-batch would.
        await pool.execute("UPDATE outbox SET published_at = NULL WHERE topic LIKE '%/payments/confirmed'")
        await wait_until(lambda: _none_unpublished(pool))
        await wait_until(lambda: all_applied(pool, "payments"))

    history = await pool.fetchval(
        "SELECT count(*) FROM subscription_history WHERE subscription_ref = 'sub-1' AND fact = 'payment_confirmed'"
    )
    assert history == 1


async def test_same_charge_confirmed_twice(settings: Settings, pool: asyncpg.Pool) -> None:
    await create_subscriptions(pool, settings, "sub-1")
    await enqueue(pool, settings, confirmed("sub-1", charge_id="ch_1"), confirmed("sub-1", charge_id="ch_1"))

    async with running_relay(settings, pool), running_consumer("payments", settings, pool):
        await wait_until(lambda: all_applied(pool, "payments"))

    payments = await pool.fetchval("SELECT count(*) FROM payments WHERE subscription_ref = 'sub-1'")
    history = await pool.fetchval(
        "SELECT count(*) FROM subscription_history WHERE subscription_ref = 'sub-1' AND fact = 'payment_confirmed'"
    )
    assert payments == 1
    assert history == 1


async def test_no_open_draw_grant_waits(settings: Settings, pool: asyncpg.Pool) -> None:
    await create_subscriptions(pool, settings, "sub-1")
    await enqueue(pool, settings, confirmed("sub-1", amount="299.00"))

    async with running_relay(settings, pool), running_consumer("payments", settings, pool):
        await wait_until(lambda: all_applied(pool, "payments"))

    waiting = await pool.fetchval("SELECT quantity FROM lucky_number_grants WHERE draw_id IS NULL")
    assert waiting == 29


async def test_missed_message_redelivered(settings: Settings, pool: asyncpg.Pool) -> None:
    # Published while no consumer listens: only the relay's redelivery can get it applied.
    await enqueue(pool, settings, confirmed("sub-1"))
    async with running_relay(settings, pool):
        await wait_until(lambda: _none_unpublished(pool))

        async with running_consumer("payments", settings, pool):
            await wait_until(lambda: all_applied(pool, "payments"), timeout=20)

    publications = await pool.fetchval("SELECT publications FROM deliveries WHERE consumer = 'payments'")
    assert publications >= 1


async def test_failing_event_dead_lettered(settings: Settings, pool: asyncpg.Pool) -> None:
    settings = settings.model_copy(update={"redelivery_after_seconds": 0.3, "redelivery_max_attempts": 2})
    await enqueue(pool, settings, confirmed("sub-1"))
    # Corrupt the event so the consumer's validation fails on every delivery.
    await pool.execute("UPDATE outbox SET envelope = jsonb_set(envelope, '{data,amount}', '\"abc\"')")

    async with running_relay(settings, pool), running_consumer("payments", settings, pool):
        await wait_until(lambda: _dead_letter_count(pool, 1), timeout=20)

    status = await pool.fetchval("SELECT status FROM deliveries WHERE consumer = 'payments'")
    notices = await pool.fetchval("SELECT count(*) FROM outbox WHERE topic LIKE '%/dead-letters/payments'")
    published_error = await pool.fetchval(
        "SELECT envelope->'data'->>'error' FROM outbox WHERE topic LIKE '%/dead-letters/payments'"
    )
    stored_error = await pool.fetchval("SELECT error FROM dead_letters")
    assert status == "dead"
    assert notices == 1
    assert published_error == "ValidationError"
    assert stored_error.startswith("ValidationError: ")


async def _dead_letter_count(pool: asyncpg.Pool, expected: int) -> bool:
    return await pool.fetchval("SELECT count(*) FROM dead_letters") == expected


@pytest.mark.timeout(120)
async def test_consumer_killed_mid_batch(settings: Settings, pool: asyncpg.Pool) -> None:
    async with pool.acquire() as connection:
        await create_open_draw(connection)
    await create_subscriptions(pool, settings, *[f"sub-{index}" for index in range(50)])
    events = [confirmed(f"sub-{index % 50}") for index in range(400)]

    first = consumer_process("payments", settings)
    try:
        async with running_relay(settings, pool):
            await enqueue(pool, settings, *events)
            await wait_until(lambda: _applied_at_least(pool, 20), timeout=30)
            kill(first)

            second = consumer_process("payments", settings)
            try:
                await wait_until(lambda: all_applied(pool, "payments"), timeout=60)
            finally:
                terminate(second)
    finally:
        kill(first)

    payments = await pool.fetchval("SELECT count(*) FROM payments")
    grants = await pool.fetchval("SELECT count(*) FROM lucky_number_grants")
    history = await pool.fetchval("SELECT count(*) FROM subscription_history WHERE fact = 'payment_confirmed'")
    numbers = await pool.fetchval("SELECT count(*) FROM lucky_numbers")
    assert payments == 400
    assert grants == 400
    assert history == 400
    assert numbers == 800


async def _applied_at_least(pool: asyncpg.Pool, count: int) -> bool:
    return await pool.fetchval("SELECT count(*) FROM deliveries WHERE status = 'applied'") >= count


def _refund(charge_id: str, status: str, at: datetime, *, refund_id: str = "rf_1") -> PaymentRefunded:
    return PaymentRefunded(
        charge_id=charge_id,
        subscription_ref="sub-1",
        kind="refund",
        refund_id=refund_id,
        amount=Decimal("29.90"),
        status=status,
        occurred_at=at,
    )


async def _apply_payments(pool: asyncpg.Pool, settings: Settings, *events: EventData) -> None:
    """Apply `events` in this order, each in its own transaction, as the payments consumer does."""
    consumer = PaymentsConsumer(settings)
    for event in events:
        async with pool.acquire() as connection, connection.transaction():
            await consumer.apply(connection, envelope_for(event, source="/tests", subject="sub-1"))


async def test_refund_overtakes_confirmation(settings: Settings, pool: asyncpg.Pool) -> None:
    async with pool.acquire() as connection:
        await create_open_draw(connection)
    await create_subscriptions(pool, settings, "sub-1")
    payment = confirmed("sub-1", charge_id="ch_1")

    await _apply_payments(pool, settings, _refund("ch_1", "DEVOLVIDO", datetime.now(UTC)), payment)

    status = await pool.fetchval("SELECT status FROM payments WHERE charge_id = 'ch_1'")
    numbers = await pool.fetchval("SELECT count(*) FROM lucky_numbers WHERE charge_id = 'ch_1' AND voided_at IS NULL")
    grants = await pool.fetchval("SELECT count(*) FROM lucky_number_grants WHERE charge_id = 'ch_1'")
    assert status == "refunded"
    assert numbers == 0
    assert grants == 0


async def test_settled_refund_applied_once(settings: Settings, pool: asyncpg.Pool) -> None:
    await create_subscriptions(pool, settings, "sub-1")
    at = datetime.now(UTC)
    # NIX may stamp the settled state with the time of the in-progress one. A later copy of the
    # settled state (another webhook) must still find the refund settled.
    events = [_refund("ch_1", "EM_PROCESSAMENTO", at), _refund("ch_1", "DEVOLVIDO", at), _refund("ch_1", "DEVOLVIDO", at)]

    await _apply_payments(pool, settings, confirmed("sub-1", charge_id="ch_1"), *events)

    status = await pool.fetchval("SELECT status FROM refunds WHERE refund_id = 'rf_1'")
    refunded_amount = await pool.fetchval("SELECT refunded_amount FROM payments WHERE charge_id = 'ch_1'")
    history = await pool.fetchval(
        "SELECT count(*) FROM subscription_history WHERE subscription_ref = 'sub-1' AND fact = 'payment_refunded'"
    )
    assert status == "DEVOLVIDO"
    assert refunded_amount == Decimal("29.90")
    assert history == 1
