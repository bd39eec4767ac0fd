"""Scheduler jobs for draws: freeze entries at cut-off, trigger due draws, and keep a demo draw coming.

Rows are claimed with FOR UPDATE SKIP LOCKED and each action re-checks the draw's status under its
lock, so two schedulers never freeze or trigger the same draw twice.
"""

import logging
import os
from datetime import UTC, datetime, timedelta

import asyncpg

from consumers import draw_admin
from consumers.draw_store import freeze, publish_state
from festival.settings import Settings
from producers.scheduler import Job

logger = logging.getLogger(__name__)

BATCH = 20
DEMO_ENV = "FESTIVAL_DEMO_DRAWS"
# A demo draw closes this long after it is created and runs shortly after closing.
DEMO_CUTOFF = timedelta(minutes=2)
DEMO_DRAW_AFTER_CUTOFF = timedelta(seconds=30)
DEMO_PRIZES = ["Smart TV 55 polegadas", "Celular", "Vale-compras de R$ 500,00"]


async def freeze_due(pool: asyncpg.Pool, settings: Settings) -> int:
    """Close every scheduled draw whose cut-off has passed, publishing its snapshot hash and count."""
    frozen = 0
    async with pool.acquire() as connection, connection.transaction():
        ids = await connection.fetch(
            "SELECT id FROM draws WHERE status = 'scheduled' AND cutoff_at <= now()"
            " ORDER BY cutoff_at LIMIT $1 FOR UPDATE SKIP LOCKED",
            BATCH,
        )
        for row in ids:
            await freeze(connection, row["id"])
            await publish_state(connection, settings, row["id"])
            frozen += 1
    return frozen


async def trigger_due(pool: asyncpg.Pool, settings: Settings) -> int:
    """Publish DrawTriggered for each draw whose time has come (Loteria Federal ones once results exist)."""
    triggered = 0
    async with pool.acquire() as connection, connection.transaction():
        ids = await connection.fetch(
            "SELECT id FROM draws WHERE status IN ('scheduled', 'closed') AND triggered_at IS NULL"
            " AND scheduled_at <= now() AND (mode = 'random' OR loteria_results IS NOT NULL)"
            " ORDER BY scheduled_at LIMIT $1 FOR UPDATE SKIP LOCKED",
            BATCH,
        )
        for row in ids:
            if await draw_admin.trigger(connection, settings, row["id"], "scheduler"):
                triggered += 1
    return triggered


async def keep_demo_draw(pool: asyncpg.Pool, settings: Settings) -> int:
    """With FESTIVAL_DEMO_DRAWS set, create a draw whenever none is upcoming, so a show starts every few minutes."""
    if not os.environ.get(DEMO_ENV):
        return 0
    async with pool.acquire() as connection, connection.transaction():
        # The advisory lock keeps two schedulers from both creating a demo draw.
        await connection.execute("SELECT pg_advisory_xact_lock(hashtext('festival.demo_draw'))")
        upcoming = await connection.fetchval("SELECT count(*) FROM draws WHERE status IN ('scheduled', 'closed', 'drawing')")
        if upcoming:
            return 0

        now = datetime.now(UTC)
        cutoff = now + DEMO_CUTOFF
        new = draw_admin.NewDraw(
            title=f"Sorteio de demonstração {now.strftime('%H:%M')}",
            prizes=DEMO_PRIZES,
            scheduled_at=cutoff + DEMO_DRAW_AFTER_CUTOFF,
            cutoff_at=cutoff,
            pace_ms=2000,
        )
        draw_id = await draw_admin.create_draw(connection, settings, new)
    logger.info("demo draw created draw_id=%s", draw_id)
    return 1


JOBS: list[Job] = [
    Job("draws-freeze", freeze_due, interval=1.0),
    Job("draws-trigger", trigger_due, interval=1.0),
    Job("draws-demo", keep_demo_draw, interval=5.0),
]
