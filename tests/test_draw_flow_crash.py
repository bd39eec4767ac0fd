"""The draws consumer killed mid-show (SIGKILL) resumes, in a new process, to the same winners."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from consumers import draw_admin
from festival.settings import Settings
from tests.helpers import wait_until
from tests.pipeline import consumer_process, kill, running_relay, terminate


async def _released(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM draw_live_steps WHERE released_at IS NOT NULL"))


async def _winners(pool: asyncpg.Pool) -> list[tuple[int, int]]:
    rows = await pool.fetch("SELECT position, number FROM draw_winners ORDER BY position")
    return [(row["position"], row["number"]) for row in rows]


async def test_killed_mid_show_resumes(pool: asyncpg.Pool, settings: Settings) -> None:
    now = datetime.now(UTC)
    new = draw_admin.NewDraw(
        title="Queda", prizes=["Carro", "Moto", "TV"], scheduled_at=now + timedelta(hours=1),
        cutoff_at=now + timedelta(minutes=30), pace_ms=700,
    )
    async with pool.acquire() as connection, connection.transaction():
        draw_id = await draw_admin.create_draw(connection, settings, new)
        await connection.executemany(
            "INSERT INTO lucky_numbers (draw_id, number, subscription_ref, charge_id) VALUES ($1, $2, $3, $4)",
            [(draw_id, number, f"sub_{number}", f"ch_{number}") for number in (5, 50, 500, 5000, 50000)],
        )
        await draw_admin.trigger(connection, settings, draw_id, "operator")

    async with running_relay(settings, pool):
        first = consumer_process("draws", settings)
        try:
            await wait_until(lambda: _some_released(pool), timeout=20)
        finally:
            kill(first)
        before = await _winners(pool)
        stopped_at = await _released(pool)

        second = consumer_process("draws", settings)
        try:
            await wait_until(lambda: _completed(pool, draw_id), timeout=30)
        finally:
            terminate(second)

    assert stopped_at < 8
    assert await _winners(pool) == before


async def _some_released(pool: asyncpg.Pool) -> bool:
    return await _released(pool) >= 2


async def _completed(pool: asyncpg.Pool, draw_id: uuid.UUID) -> bool:
    return bool(await pool.fetchval("SELECT status = 'completed' FROM draws WHERE id = $1", draw_id))


async def test_resumed_show_publishes_each_step_once(pool: asyncpg.Pool, settings: Settings) -> None:
    now = datetime.now(UTC)
    new = draw_admin.NewDraw(
        title="Queda", prizes=["Carro", "Moto"], scheduled_at=now + timedelta(hours=1),
        cutoff_at=now + timedelta(minutes=30), pace_ms=500,
    )
    async with pool.acquire() as connection, connection.transaction():
        draw_id = await draw_admin.create_draw(connection, settings, new)
        await connection.executemany(
            "INSERT INTO lucky_numbers (draw_id, number, subscription_ref, charge_id) VALUES ($1, $2, $3, $4)",
            [(draw_id, number, f"sub_{number}", f"ch_{number}") for number in (7, 70, 700)],
        )
        await draw_admin.trigger(connection, settings, draw_id, "operator")

    async with running_relay(settings, pool):
        first = consumer_process("draws", settings)
        try:
            await wait_until(lambda: _some_released(pool), timeout=20)
        finally:
            kill(first)
        second = consumer_process("draws", settings)
        try:
            await wait_until(lambda: _completed(pool, draw_id), timeout=30)
        finally:
            terminate(second)

    live_rows = await pool.fetchval("SELECT count(*) FROM outbox WHERE topic LIKE '%/live'")
    assert live_rows == 6


async def test_show_survives_release_bug(settings: Settings, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch) -> None:
    from consumers import draw_live

    calls = 0

    async def broken_release(*_args: object, **_kwargs: object) -> int:
        nonlocal calls
        calls += 1
        raise ValueError("broken step")

    monkeypatch.setattr(draw_live, "release_due", broken_release)
    monkeypatch.setattr(draw_live, "CRASH_RETRY_SECONDS", 0.01)
    show = asyncio.create_task(draw_live.run_show(settings, pool))
    try:
        await wait_until(lambda: _at_least(lambda: calls, 2), timeout=5)
    finally:
        show.cancel()
        await asyncio.gather(show, return_exceptions=True)

    assert calls >= 2


async def _at_least(read, minimum: int) -> bool:  # type: ignore[no-untyped-def]
    return bool(read() >= minimum)
