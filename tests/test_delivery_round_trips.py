"""Round trips to PostgreSQL per delivered event: each costs a send and a receive in the consumer
and in the server, so the hot paths keep them few."""

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from broker import topics
from consumers import lucky_numbers, payments, subscriptions
from consumers.delivery import DeliveryHandler, DeliveryPolicy, Outcome
from festival import wakeups
from festival.db import create_pool
from festival.outbox import Outbox
from festival.settings import Settings
from schemas.events import EventData, SubscriptionChanged
from tests.pipeline import confirmed, create_open_draw, create_subscriptions


@pytest.fixture
async def one_connection(settings: Settings) -> AsyncIterator[tuple[asyncpg.Pool, list[str]]]:
    """A pool of one kept connection that appends every statement it sends to the returned list."""
    sent: list[str] = []
    pool = await create_pool(settings.require_database_url(), min_size=1, max_size=1, reset_session=False)
    async with pool.acquire() as connection:
        # The logger stays on the connection: a kept session is not reset on release.
        connection.add_query_logger(lambda record: sent.append(record.query))
    yield pool, sent
    await pool.close()


async def _deliver(
    settings: Settings, pool: asyncpg.Pool, sent: list[str], consumer: str, event: EventData, subject: str
) -> tuple[Outcome, int]:
    """Enqueue `event`, deliver it to `consumer` once, and return the outcome and the statements sent."""
    outbox = Outbox.from_settings(settings)
    async with pool.acquire() as connection:
        envelope = await outbox.publish(connection, event, source="/tests", subject=subject)
    module = payments if consumer == payments.NAME else subscriptions
    handler = DeliveryHandler(
        consumer, module.build(settings), pool, outbox, DeliveryPolicy(3, 1.0), notify_after_commit=module.NOTIFY_AFTER_COMMIT
    )

    await asyncio.sleep(0)
    sent.clear()
    outcome = await handler.handle(envelope.to_json(), topics.absolute(settings.topic_root, event.TOPIC))
    # asyncpg calls query loggers with `call_soon`.
    await asyncio.sleep(0)
    return outcome, len(sent)


async def test_confirmed_payment_seven_round_trips(settings: Settings, one_connection: tuple[asyncpg.Pool, list[str]]) -> None:
    pool, sent = one_connection
    async with pool.acquire() as connection:
        await create_open_draw(connection)
    await create_subscriptions(pool, settings, "sub-1")
    event = confirmed("sub-1")

    outcome, statements = await _deliver(settings, pool, sent, payments.NAME, event, event.charge_id)

    assert outcome is Outcome.APPLIED
    # BEGIN, claim, record and load, reserve numbers, write the change, COMMIT, wake the relay
    # and the pusher.
    assert statements == 7
    issued = await pool.fetchval("SELECT count(*) FROM lucky_numbers WHERE charge_id = $1", event.charge_id)
    assert issued == lucky_numbers.quantity_for(event.amount, settings.lucky_number_price)


async def test_changed_subscription_six_round_trips(
    settings: Settings, one_connection: tuple[asyncpg.Pool, list[str]]
) -> None:
    pool, sent = one_connection
    await create_subscriptions(pool, settings, "sub-1")
    change = await pool.fetchrow(
        "SELECT o.envelope FROM outbox o JOIN deliveries d USING (event_id) WHERE d.consumer = 'subscriptions'"
    )
    await pool.execute("DELETE FROM deliveries")
    event = SubscriptionChanged.model_validate(change["envelope"]["data"])

    outcome, statements = await _deliver(settings, pool, sent, subscriptions.NAME, event, "sub-1")

    assert outcome is Outcome.APPLIED
    # BEGIN, claim, lock and load, record the entitlement, COMMIT, wake the pusher.
    assert statements == 6
    assert await pool.fetchval("SELECT pending FROM entitlement_pushes WHERE subscription_ref = 'sub-1'") is True


async def _listening(settings: Settings, channel: str) -> tuple[asyncpg.Connection, list[str]]:
    received: list[str] = []
    listener = await asyncpg.connect(settings.require_database_url())
    await listener.add_listener(channel, lambda *args: received.append(args[3]))
    return listener, received


async def test_deferred_outbox_insert_silent(settings: Settings, pool: asyncpg.Pool) -> None:
    listener, received = await _listening(settings, wakeups.OUTBOX_CHANNEL)
    outbox = Outbox.from_settings(settings)
    try:
        with wakeups.deferred() as channels:
            async with pool.acquire() as connection:
                async with connection.transaction():
                    await connection.execute("SELECT set_config($1, 'on', true)", wakeups.DEFER_SETTING)
                    await outbox.publish(connection, confirmed("sub-1"), source="/tests", subject="sub-1")
                await asyncio.sleep(0.2)
                silent = list(received)
                await wakeups.send(connection, channels)
        await asyncio.wait_for(_arrival(received), timeout=10)
    finally:
        await listener.close()

    assert silent == []
    assert channels == {wakeups.OUTBOX_CHANNEL}


async def test_outbox_insert_notifies_on_commit(settings: Settings, pool: asyncpg.Pool) -> None:
    listener, received = await _listening(settings, wakeups.OUTBOX_CHANNEL)
    try:
        async with pool.acquire() as connection, connection.transaction():
            await Outbox.from_settings(settings).publish(connection, confirmed("sub-1"), source="/tests", subject="sub-1")
        await asyncio.wait_for(_arrival(received), timeout=10)
    finally:
        await listener.close()

    assert received == [""]


async def test_delivery_wakes_relay_after_commit(settings: Settings, pool: asyncpg.Pool) -> None:
    await create_subscriptions(pool, settings, "sub-1")
    listener, received = await _listening(settings, wakeups.OUTBOX_CHANNEL)
    outbox = Outbox.from_settings(settings)
    event = confirmed("sub-1")
    async with pool.acquire() as connection:
        envelope = await outbox.publish(connection, event, source="/tests", subject=event.charge_id)
    handler = DeliveryHandler(
        payments.NAME, payments.build(settings), pool, outbox, DeliveryPolicy(3, 1.0), notify_after_commit=True
    )
    try:
        await asyncio.wait_for(_arrival(received), timeout=10)
        received.clear()
        outcome = await handler.handle(envelope.to_json(), topics.absolute(settings.topic_root, event.TOPIC))
        await asyncio.wait_for(_arrival(received), timeout=10)
    finally:
        await listener.close()

    assert outcome is Outcome.APPLIED
    assert received == [""]


async def _arrival(received: list[str]) -> None:
    while not received:
        await asyncio.sleep(0.01)
