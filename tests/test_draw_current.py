"""`draws/current` goes to the outbox when a draw's status changes, and not for numbers or winners."""

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from consumers import draw_admin
from consumers.draw_live import release_due
from consumers.draw_run import run_draw
from festival.settings import Settings
from producers import draw_jobs


async def payloads(pool: asyncpg.Pool, topic_suffix: str) -> list[dict[str, Any]]:
    """Return the public messages enqueued on topics ending with `topic_suffix`, in outbox order."""
    rows = await pool.fetch("SELECT envelope FROM outbox WHERE topic LIKE '%' || $1 ORDER BY position", topic_suffix)
    return [json.loads(row["envelope"]) if isinstance(row["envelope"], str) else row["envelope"] for row in rows]


async def current_rows(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    return await payloads(pool, "/draws/current")


async def live_kinds(pool: asyncpg.Pool) -> list[str]:
    return [step["kind"] for step in await payloads(pool, "/live")]


async def new_draw(pool: asyncpg.Pool, settings: Settings, *, cutoff_in: timedelta = timedelta(minutes=30)) -> uuid.UUID:
    now = datetime.now(UTC)
    new = draw_admin.NewDraw(
        title="Atual", prizes=["Carro"], scheduled_at=now + timedelta(hours=1), cutoff_at=now + cutoff_in, pace_ms=0,
    )
    async with pool.acquire() as connection, connection.transaction():
        draw_id = await draw_admin.create_draw(connection, settings, new)
        await connection.execute(
            "INSERT INTO lucky_numbers (draw_id, number, subscription_ref, charge_id) VALUES ($1, 42, 'sub_42', 'ch_42')",
            draw_id,
        )
    return draw_id


async def start_draw(pool: asyncpg.Pool, draw_id: uuid.UUID) -> None:
    async with pool.acquire() as connection, connection.transaction():
        assert await run_draw(connection, draw_id)


async def release_next(pool: asyncpg.Pool, settings: Settings) -> str:
    """Release one step (pace 0 makes the next one due at once) and return its kind."""
    assert await release_due(pool, settings) == 1
    return (await live_kinds(pool))[-1]


async def test_number_step_skips_current(pool: asyncpg.Pool, settings: Settings) -> None:
    draw_id = await new_draw(pool, settings)
    await start_draw(pool, draw_id)
    assert await release_next(pool, settings) == "started"
    before = len(await current_rows(pool))

    kinds = [await release_next(pool, settings) for _ in range(2)]

    assert kinds == ["number_drawn", "winner"]
    assert len(await current_rows(pool)) == before


async def test_status_steps_publish_current(pool: asyncpg.Pool, settings: Settings) -> None:
    draw_id = await new_draw(pool, settings)
    await start_draw(pool, draw_id)
    statuses = []
    for _ in range(4):
        kind = await release_next(pool, settings)
        statuses.append((kind, [row["status"] for row in await current_rows(pool)]))

    assert statuses[0] == ("started", ["scheduled", "drawing"])
    assert statuses[1] == ("number_drawn", ["scheduled", "drawing"])
    assert statuses[2] == ("winner", ["scheduled", "drawing"])
    assert statuses[3] == ("finished", ["scheduled", "drawing", "completed"])


async def test_whole_draw_current_count(pool: asyncpg.Pool, settings: Settings) -> None:
    draw_id = await new_draw(pool, settings)
    await start_draw(pool, draw_id)
    while await release_due(pool, settings):
        pass

    rows = await current_rows(pool)
    assert await live_kinds(pool) == ["started", "number_drawn", "winner", "finished"]
    assert [row["status"] for row in rows] == ["scheduled", "drawing", "completed"]
    assert {row["draw_id"] for row in rows} == {str(draw_id)}


async def test_freeze_publishes_current(pool: asyncpg.Pool, settings: Settings) -> None:
    draw_id = await new_draw(pool, settings, cutoff_in=timedelta(seconds=-1))

    assert await draw_jobs.freeze_due(pool, settings) == 1

    rows = await current_rows(pool)
    assert [row["status"] for row in rows] == ["scheduled", "closed"]
    assert rows[-1]["draw_id"] == str(draw_id)


async def test_cancel_publishes_current(pool: asyncpg.Pool, settings: Settings) -> None:
    draw_id = await new_draw(pool, settings)
    async with pool.acquire() as connection, connection.transaction():
        await draw_admin.cancel(connection, settings, draw_id)

    rows = await current_rows(pool)
    assert len(rows) == 2
    # A cancelled draw is no longer current, and no other draw exists.
    assert rows[-1]["draw_id"] is None


async def test_next_draw_current_after_finish(pool: asyncpg.Pool, settings: Settings) -> None:
    first = await new_draw(pool, settings)
    await start_draw(pool, first)
    second = await new_draw(pool, settings)
    assert (await current_rows(pool))[-1]["draw_id"] == str(first)

    while await release_due(pool, settings):
        pass

    last = (await current_rows(pool))[-1]
    assert last["draw_id"] == str(second)
    assert last["status"] == "scheduled"
