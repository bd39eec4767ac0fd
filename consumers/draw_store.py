"""Draw rows in PostgreSQL: freezing the entries, and writing the public retained state to the outbox.

Shared by the gateway (create, cancel), the scheduler (cut-off) and the draws consumer, so that
every public draw message is built in one place and goes through the outbox in the transaction of
its cause. The relay then publishes them in outbox order, which keeps retained state in order.
"""

import json
import logging
import uuid
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg

from broker import topics
from broker.tracing import current_trace_fields
from festival.domain.draws import Snapshot, freeze_bytes
from festival.settings import Settings
from schemas.live import CurrentDraw, DrawState, LivePrize, LiveStep, LiveWinner

logger = logging.getLogger(__name__)

# int8send writes a bigint as 8 big-endian bytes; numpy sorts faster than an ORDER BY here.
SNAPSHOT_QUERY = (
    "SELECT coalesce(string_agg(int8send(number), ''::bytea), ''::bytea)"
    " FROM lucky_numbers WHERE draw_id = $1 AND voided_at IS NULL"
)
DRAW_COLUMNS = (
    "id, title, status, scheduled_at, cutoff_at, series, prizes, mode, seed, commitment, loteria_results,"
    " loteria_contest, loteria_drawn_on, snapshot_sha256, snapshot_count, frozen_at, started_at, completed_at,"
    " pace_ms, triggered_at, created_at"
)


def verify_path(draw_id: UUID) -> str:
    return f"/v1/draws/{draw_id}/audit"


def prizes_of(draw: asyncpg.Record) -> list[str]:
    prizes = draw["prizes"]
    return list(json.loads(prizes) if isinstance(prizes, str) else prizes)


async def fetch_draw(connection: asyncpg.Connection, draw_id: UUID, *, lock: bool = False) -> asyncpg.Record | None:
    suffix = " FOR UPDATE" if lock else ""
    row: asyncpg.Record | None = await connection.fetchrow(f"SELECT {DRAW_COLUMNS} FROM draws WHERE id = $1{suffix}", draw_id)
    return row


async def freeze(connection: asyncpg.Connection, draw_id: UUID) -> Snapshot:
    """Freeze the entries of a scheduled draw (locked by the caller): store the snapshot, close the draw."""
    data = await connection.fetchval(SNAPSHOT_QUERY, draw_id)
    snapshot = freeze_bytes(bytes(data))

    await connection.execute(
        "INSERT INTO draw_snapshots (draw_id, numbers) VALUES ($1, $2)", draw_id, _canonical(snapshot)
    )
    await connection.execute(
        "UPDATE draws SET status = 'closed', snapshot_sha256 = $2, snapshot_count = $3, frozen_at = now() WHERE id = $1",
        draw_id, snapshot.sha256, snapshot.count,
    )
    logger.info("draw frozen draw_id=%s count=%d sha256=%s", draw_id, snapshot.count, snapshot.sha256)
    return snapshot


def _canonical(snapshot: Snapshot) -> bytes:
    return snapshot.numbers.astype(">u8", copy=False).tobytes()


async def released_steps(connection: asyncpg.Connection, draw_id: UUID) -> list[LiveStep]:
    rows = await connection.fetch(
        "SELECT payload, released_at FROM draw_live_steps WHERE draw_id = $1 AND released_at IS NOT NULL ORDER BY sequence",
        draw_id,
    )
    return [step_from_row(row["payload"], row["released_at"]) for row in rows]


def step_from_row(payload: Any, at: datetime) -> LiveStep:
    document = json.loads(payload) if isinstance(payload, str) else dict(payload)
    return LiveStep.model_validate({**document, "at": at})


def build_state(draw: asyncpg.Record, steps: list[LiveStep], *, now: datetime | None = None) -> DrawState:
    """Build the whole public state of a draw after `steps` (the released live steps, in order)."""
    status = draw["status"]
    if steps:
        status = "completed" if steps[-1].kind == "finished" else "drawing"
    seed = draw["seed"] if status == "completed" else None

    return DrawState(
        draw_id=draw["id"],
        title=draw["title"],
        status=status,
        sequence=steps[-1].sequence if steps else 0,
        updated_at=now or datetime.now(UTC),
        scheduled_at=draw["scheduled_at"],
        cutoff_at=draw["cutoff_at"],
        prizes=[LivePrize(position=index, description=text) for index, text in enumerate(prizes_of(draw), start=1)],
        commitment=draw["commitment"],
        snapshot_sha256=draw["snapshot_sha256"],
        entry_count=draw["snapshot_count"],
        numbers_drawn=[step for step in steps if step.kind == "number_drawn"],
        winners=[step.winner for step in steps if step.kind == "winner" and step.winner is not None],
        seed=seed,
        verify_url=verify_path(draw["id"]),
    )


async def current_draw(connection: asyncpg.Connection) -> CurrentDraw:
    """Return the draw the landing page follows: one being drawn, else the next one, else the last completed."""
    row = await connection.fetchrow(
        "SELECT id, status, scheduled_at FROM draws WHERE status <> 'cancelled'"
        " ORDER BY CASE status WHEN 'drawing' THEN 0 WHEN 'closed' THEN 1 WHEN 'scheduled' THEN 1 ELSE 2 END,"
        " CASE WHEN status = 'completed' THEN NULL ELSE scheduled_at END ASC NULLS LAST,"
        " completed_at DESC NULLS LAST, id LIMIT 1"
    )
    now = datetime.now(UTC)
    if row is None:
        return CurrentDraw(draw_id=None, status=None, scheduled_at=None, updated_at=now)
    return CurrentDraw(draw_id=row["id"], status=row["status"], scheduled_at=row["scheduled_at"], updated_at=now)


async def enqueue_public(
    connection: asyncpg.Connection,
    settings: Settings,
    topic: str,
    message: LiveStep | DrawState | CurrentDraw,
    *,
    retain: bool,
    trace_fields: dict[str, str] | None = None,
) -> None:
    """Store a public message (plain JSON, no envelope) for the relay to publish on `topic`.

    `trace_fields` (traceparent, tracestate) stay out of the public payload; the relay reads them
    from their own column to link its publish span.
    """
    await connection.execute(
        "INSERT INTO outbox (event_id, topic, envelope, retain, trace_fields) VALUES ($1, $2, $3, $4, $5)",
        uuid.uuid4(),
        topics.absolute(settings.topic_root, topic),
        message.model_dump(mode="json"),
        retain,
        trace_fields or current_trace_fields() or None,
    )


async def publish_state(
    connection: asyncpg.Connection,
    settings: Settings,
    draw_id: UUID,
    *,
    step: LiveStep | None = None,
    status_changed: bool = True,
    trace_fields: dict[str, str] | None = None,
) -> DrawState:
    """Enqueue `step` (if any) on the live topic, then the retained state.

    `draws/current` is enqueued too when `status_changed`, because it names a draw and its status
    and nothing else: a number or a winner leaves it as it was, and every screen would receive a
    copy per step for nothing.
    """
    draw = await fetch_draw(connection, draw_id)
    assert draw is not None, draw_id
    steps = await released_steps(connection, draw_id)
    state = build_state(draw, steps)

    if step is not None:
        await enqueue_public(connection, settings, topics.draw_live(str(draw_id)), step, retain=False, trace_fields=trace_fields)
    await enqueue_public(connection, settings, topics.draw_state(str(draw_id)), state, retain=True, trace_fields=trace_fields)
    if status_changed:
        await publish_current(connection, settings, trace_fields=trace_fields)
    return state


async def publish_current(
    connection: asyncpg.Connection, settings: Settings, *, trace_fields: dict[str, str] | None = None
) -> CurrentDraw:
    """Enqueue the retained `draws/current`, computed after every earlier transaction that enqueued it.

    The transaction-scoped lock orders these transactions, and under READ COMMITTED the query after
    it sees every one that committed before, so the last one enqueued has seen all their changes. Without it two concurrent changes, such
    as one draw finishing while the next one closes, could leave a stale `draws/current` retained
    until the next status change.
    """
    await connection.execute("SELECT pg_advisory_xact_lock(hashtext('festival.draws_current'))")
    current = await current_draw(connection)
    await enqueue_public(connection, settings, topics.DRAWS_CURRENT, current, retain=True, trace_fields=trace_fields)
    return current
