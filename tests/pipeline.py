"""Helpers for pipeline tests: running the relay and consumers in-process, and writing events."""

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg

from broker.connection import aiomqtt_client
from consumers.runner import start_consumer
from festival.outbox import Outbox
from festival.settings import Settings
from producers.relay import Relay, run_relay
from schemas.events import PaymentConfirmed

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


@contextlib.asynccontextmanager
async def running_relay(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[Relay]:
    """Run a relay in this process for the duration of the block."""
    relay = Relay(settings)
    async with aiomqtt_client(settings, max_inflight_messages=100) as client:
        client.pending_calls_threshold = settings.relay_batch_size * 2
        task = asyncio.create_task(relay.drain(pool, client), name="test-relay")
        try:
            yield relay
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


@contextlib.asynccontextmanager
async def relay_task(settings: Settings) -> AsyncIterator[None]:
    """Run the production relay loop, with its reconnects, for the duration of the block."""
    task = asyncio.create_task(run_relay(settings), name="test-relay")
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@contextlib.asynccontextmanager
async def running_consumer(name: str, settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[None]:
    """Run consumer `name` in this process for the duration of the block."""
    broker = await start_consumer(name, settings, pool)
    try:
        yield
    finally:
        await broker.stop()


def consumer_process(name: str, settings: Settings, **extra_env: str) -> subprocess.Popen[bytes]:
    """Start `festival consumer NAME` as a child process with the test's settings and `extra_env`."""
    env = {
        **os.environ,
        "FESTIVAL_DATABASE_URL": settings.require_database_url(),
        "FESTIVAL_MQTT_URL": settings.require_mqtt_url(),
        "FESTIVAL_MQTT_VERSION": settings.mqtt_version,
        "FESTIVAL_TOPIC_ROOT": settings.topic_root,
        "FESTIVAL_REDELIVERY_AFTER_SECONDS": str(settings.redelivery_after_seconds),
        "FESTIVAL_LOG_LEVEL": "WARNING",
        **extra_env,
    }
    return subprocess.Popen([sys.executable, "-m", "festival.cli", "consumer", name], env=env)


def kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.wait(10)


def terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            kill(process)


async def create_open_draw(connection: asyncpg.Connection, *, series: int = 1) -> uuid.UUID:
    draw_id = uuid.uuid4()
    now = datetime.now(UTC)
    await connection.execute(
        "INSERT INTO draws (id, title, scheduled_at, cutoff_at, series, number_key) VALUES ($1, $2, $3, $4, $5, $6)",
        draw_id, "Sorteio de teste", now + timedelta(days=2), now + timedelta(days=1), series, secrets.token_bytes(32),
    )
    return draw_id


def confirmed(subscription_ref: str, *, charge_id: str | None = None, amount: str = "29.90") -> PaymentConfirmed:
    return PaymentConfirmed(
        charge_id=charge_id or f"ch_{uuid.uuid4().hex[:12]}",
        subscription_ref=subscription_ref,
        amount=Decimal(amount),
        method="card",
        paid_at=datetime.now(UTC),
    )


async def enqueue(pool: asyncpg.Pool, settings: Settings, *events: PaymentConfirmed) -> None:
    outbox = Outbox.from_settings(settings)
    async with pool.acquire() as connection, connection.transaction():
        for event in events:
            await outbox.publish(connection, event, source="/tests", subject=event.charge_id)


async def all_applied(pool: asyncpg.Pool, consumer: str) -> bool:
    pending = await pool.fetchval(
        "SELECT count(*) FROM deliveries WHERE consumer = $1 AND status <> 'applied'", consumer
    )
    total = await pool.fetchval("SELECT count(*) FROM deliveries WHERE consumer = $1", consumer)
    return bool(total) and pending == 0


async def create_subscriptions(pool: asyncpg.Pool, settings: Settings, *refs: str, at: datetime = T0) -> None:
    """Store a `created` REDETV!PLUS event for each subscription, as the subscriptions consumer would."""
    from consumers.subscription_store import SubscriptionStore
    from festival.domain.subscriptions import SubscriptionCreated

    store = SubscriptionStore.from_settings(settings, source="/tests")
    async with pool.acquire() as connection, connection.transaction():
        for ref in refs:
            fact = SubscriptionCreated(
                subscription_ref=ref, event_id=f"created-{ref}", occurred_at=at, user_id=f"user-{ref}", plan="mensal"
            )
            await store.apply_fact(connection, fact, event_id=uuid.uuid4())
