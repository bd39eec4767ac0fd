"""The paced show: releases the stored live steps of drawing draws into the outbox, one per pace.

Each release is one short transaction: the step and the retained state go to the outbox, with
`draws/current` when the step changes the draw's status, and the step is marked released. So no
transaction stays open during a show of minutes. The pace counts from the previous step's
release, so after a crash the show resumes at the first unreleased step. Steps are claimed with
SKIP LOCKED, so several consumer instances never release the same step twice.
"""

import asyncio
import logging
import asyncpg

from consumers.draw_store import publish_state, step_from_row
from festival.settings import Settings

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.1
# Longest pause between release attempts while the database fails.
MAX_RETRY_SECONDS = 5.0
# Steps after which the draw's public status differs: `started` makes public the `drawing` that
# `run_draw` stored, and `finished` or `cancelled` ends the draw. Only these change `draws/current`.
STATUS_STEPS = frozenset({"started", "finished", "cancelled"})
# Pause after an unexpected error, so that a bug hit on every try logs one trace every few seconds.
CRASH_RETRY_SECONDS = 5.0

# The first unreleased step of each drawing draw, when the pace since the previous step has passed.
DUE_STEPS = """
SELECT s.draw_id, s.sequence, s.kind, s.payload, s.trace_fields
FROM draw_live_steps s JOIN draws d ON d.id = s.draw_id
LEFT JOIN draw_live_steps p ON p.draw_id = s.draw_id AND p.sequence = s.sequence - 1
WHERE s.released_at IS NULL AND d.status = 'drawing'
  AND (p.sequence IS NULL OR p.released_at + d.pace_ms * interval '1 millisecond' <= now())
ORDER BY s.draw_id, s.sequence
LIMIT $1
FOR UPDATE OF s SKIP LOCKED
"""


async def release_due(pool: asyncpg.Pool, settings: Settings, *, limit: int = 20) -> int:
    """Release every step that is due now; return how many were released."""
    released = 0
    async with pool.acquire() as connection, connection.transaction():
        rows = await connection.fetch(DUE_STEPS, limit)
        for row in rows:
            released += await _release(connection, settings, row)
    return released


async def _release(connection: asyncpg.Connection, settings: Settings, row: asyncpg.Record) -> int:
    # DUE_STEPS admits only a step whose predecessor is released; this re-check guards against a gap in the script.
    earlier = await connection.fetchval(
        "SELECT count(*) FROM draw_live_steps WHERE draw_id = $1 AND sequence < $2 AND released_at IS NULL",
        row["draw_id"], row["sequence"],
    )
    if earlier:
        return 0

    at = await connection.fetchval(
        "UPDATE draw_live_steps SET released_at = clock_timestamp() WHERE draw_id = $1 AND sequence = $2 RETURNING released_at",
        row["draw_id"], row["sequence"],
    )
    if row["kind"] == "finished":
        await connection.execute(
            "UPDATE draws SET status = 'completed', completed_at = $2 WHERE id = $1", row["draw_id"], at
        )

    step = step_from_row(row["payload"], at)
    await publish_state(
        connection, settings, row["draw_id"],
        step=step, status_changed=row["kind"] in STATUS_STEPS, trace_fields=row["trace_fields"],
    )
    logger.info("draw step released draw_id=%s sequence=%d kind=%s", row["draw_id"], row["sequence"], row["kind"])
    if row["kind"] == "finished":
        logger.info("draw completed draw_id=%s", row["draw_id"])
    return 1


async def run_show(settings: Settings, pool: asyncpg.Pool) -> None:
    """Release due steps until cancelled. Every error is logged and the release retried."""
    logger.info("draw show started poll=%.2fs", POLL_SECONDS)
    failures = 0
    try:
        while True:
            delay = POLL_SECONDS
            try:
                released = await release_due(pool, settings)
                failures = 0
                if released:
                    continue
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as error:
                # While the database is down, back off so the log gets one line every few seconds
                # instead of ten a second.
                failures += 1
                delay = min(POLL_SECONDS * 2**failures, MAX_RETRY_SECONDS)
                logger.warning("draw show release failed attempt=%d error=%r retry_in=%.1fs", failures, error, delay)
            except Exception:
                # A bug in one step must not end the show of every draw until the next restart.
                # The transaction rolled back, so the step is tried again after a longer pause.
                logger.exception("draw show release crashed retry_in=%.1fs", CRASH_RETRY_SECONDS)
                delay = CRASH_RETRY_SECONDS
            await asyncio.sleep(delay)
    finally:
        logger.info("draw show stopped")
