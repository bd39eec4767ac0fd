"""The relay and consumers lose nothing across broker and database restarts."""

import asyncio

import asyncpg
import pytest

from festival.services import EmbeddedPostgres, Mosquitto
from festival.settings import Settings
from tests.helpers import wait_until
from tests.pipeline import all_applied, confirmed, create_open_draw, enqueue, relay_task, running_consumer


async def _payments(pool: asyncpg.Pool) -> int:
    count: int = await pool.fetchval("SELECT count(*) FROM payments")
    return count


@pytest.mark.parametrize("mqtt_version", ["5", "3.1.1"])
@pytest.mark.timeout(120)
async def test_broker_restart_loses_nothing(
    settings: Settings, pool: asyncpg.Pool, mosquitto: Mosquitto, mqtt_version: str
) -> None:
    settings = settings.model_copy(update={"mqtt_version": mqtt_version})
    async with pool.acquire() as connection:
        await create_open_draw(connection)

    async with relay_task(settings), running_consumer("payments", settings, pool):
        await enqueue(pool, settings, *[confirmed(f"sub-{index}") for index in range(30)])
        await wait_until(lambda: _at_least(pool, 1), timeout=20)

        mosquitto.stop()
        try:
            await enqueue(pool, settings, *[confirmed(f"sub-{index}") for index in range(30, 60)])
        finally:
            mosquitto.start()

        await wait_until(lambda: all_applied(pool, "payments"), timeout=90)

    assert await _payments(pool) == 60


async def _at_least(pool: asyncpg.Pool, count: int) -> bool:
    return await _payments(pool) >= count


@pytest.mark.timeout(120)
async def test_database_restart_loses_nothing(
    settings: Settings, pool: asyncpg.Pool, postgres: EmbeddedPostgres
) -> None:
    async with relay_task(settings), running_consumer("payments", settings, pool):
        await enqueue(pool, settings, *[confirmed(f"sub-{index}") for index in range(20)])
        await wait_until(lambda: all_applied(pool, "payments"), timeout=30)

        await asyncio.to_thread(postgres.restart)
        await _enqueue_when_up(pool, settings)

        await wait_until(lambda: _all_applied_when_up(pool), timeout=90)

    assert await _payments(pool) == 40


async def _enqueue_when_up(pool: asyncpg.Pool, settings: Settings) -> None:
    # Pooled connections broken by the restart fail once each before the pool replaces them.
    events = [confirmed(f"sub-{index}") for index in range(20, 40)]
    async with asyncio.timeout(30):
        while True:
            try:
                await enqueue(pool, settings, *events)
                return
            except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError):
                await asyncio.sleep(0.1)


async def _all_applied_when_up(pool: asyncpg.Pool) -> bool:
    try:
        return await all_applied(pool, "payments") and await _payments(pool) == 40
    except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError):
        return False
