"""The figures of the operator dashboard, read from PostgreSQL in one read-only transaction.

Every figure comes from the database, so the dashboard is the same whichever gateway process
serves it. Only counts, ages, ids and draw titles are read: no table with personal data is queried.
Each query is served by an index on the rows it counts (migration 0009 adds the one on
`inbox.received_at`), except the count of subscriptions by status, which reads the whole table.
"""

from datetime import datetime
from typing import TypeVar
from uuid import UUID

import asyncpg
from pydantic import BaseModel

RECENT_SECONDS = 300
HOUR_SECONDS = 3600
# Webhook-to-applied latency is computed over at most this many of the latest webhooks, so that
# its cost stays bounded under load: at 500 webhooks/s the 5-minute window contains 150,000.
LATENCY_SAMPLE_LIMIT = 10_000

Model = TypeVar("Model", bound=BaseModel)


class PartnerWebhooks(BaseModel):
    partner: str
    last_5_minutes: int
    last_hour: int


class OutboxFigures(BaseModel):
    unpublished: int
    oldest_unpublished_seconds: float | None


class ConsumerDeliveries(BaseModel):
    consumer: str
    pending: int
    oldest_pending_seconds: float | None
    """Time since the oldest pending event entered the outbox."""


class ConsumerDeadLetters(BaseModel):
    consumer: str
    open: int
    oldest_seconds: float | None


class LatencyFigures(BaseModel):
    """Webhook-to-applied latency: a delivery's `applied_at` minus its webhook's `received_at`.

    Only the events a webhook produced count, which is the first hop, such as `payments/confirmed`
    applied by the payments consumer. Of those, only the applied ones give a sample, and
    `not_applied` counts the others.
    """

    window_seconds: int
    sample_limit: int
    applied: int
    not_applied: int
    p50_ms: float | None
    p99_ms: float | None


class StatusCount(BaseModel):
    status: str
    count: int


class SubscriptionFigures(BaseModel):
    by_status: list[StatusCount]
    total: int
    illegal_transitions_open: int
    """Transitions the state machine rejected that no operator has reviewed yet."""
    entitlement_pushes_pending: int
    oldest_entitlement_push_seconds: float | None


class LuckyNumberFigures(BaseModel):
    issued: int
    """Numbers issued in every draw, including those voided later."""
    grants_waiting: int
    """Confirmed payments whose numbers wait for a draw open to issue them."""


class NextDraw(BaseModel):
    id: UUID
    title: str
    status: str
    scheduled_at: datetime
    cutoff_at: datetime
    issued_numbers: int


class LastDraw(BaseModel):
    id: UUID
    title: str
    scheduled_at: datetime
    started_at: datetime | None
    completed_at: datetime
    duration_seconds: float | None
    """From the start of the live draw to its completion."""


class Figures(BaseModel):
    generated_at: datetime
    """Database time at which the figures were read."""
    webhooks: list[PartnerWebhooks]
    outbox: OutboxFigures
    deliveries: list[ConsumerDeliveries]
    dead_letters: list[ConsumerDeadLetters]
    latency: LatencyFigures
    subscriptions: SubscriptionFigures
    lucky_numbers: LuckyNumberFigures
    next_draw: NextDraw | None
    last_draw: LastDraw | None


# Index-only scan of inbox_received (received_at, partner).
SELECT_WEBHOOKS = """
SELECT partner,
       count(*) FILTER (WHERE received_at > now() - make_interval(secs => $1)) AS last_5_minutes,
       count(*) AS last_hour
FROM inbox
WHERE received_at > now() - make_interval(secs => $2)
GROUP BY partner
"""

SELECT_OUTBOX = """
SELECT count(*) AS unpublished, extract(epoch FROM now() - min(created_at))::float8 AS oldest_seconds
FROM outbox WHERE published_at IS NULL
"""

SELECT_DELIVERIES = """
SELECT d.consumer, count(*) AS pending, extract(epoch FROM now() - min(o.created_at))::float8 AS oldest_seconds
FROM deliveries d JOIN outbox o USING (event_id)
WHERE d.status = 'pending'
GROUP BY d.consumer
"""

SELECT_DEAD_LETTERS = """
SELECT consumer, count(*) AS open, extract(epoch FROM now() - min(created_at))::float8 AS oldest_seconds
FROM dead_letters WHERE replayed_at IS NULL
GROUP BY consumer
"""

SELECT_LATENCY = """
WITH recent AS (
    SELECT received_at, event_ids FROM inbox
    WHERE received_at > now() - make_interval(secs => $1)
    ORDER BY received_at DESC
    LIMIT $2
), samples AS (
    SELECT d.status, extract(epoch FROM d.applied_at - r.received_at) * 1000 AS latency_ms
    FROM recent r
    CROSS JOIN LATERAL unnest(r.event_ids) AS e (event_id)
    JOIN deliveries d ON d.event_id = e.event_id
)
SELECT count(*) FILTER (WHERE status = 'applied') AS applied,
       count(*) FILTER (WHERE status <> 'applied') AS not_applied,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) FILTER (WHERE status = 'applied') AS p50_ms,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms) FILTER (WHERE status = 'applied') AS p99_ms
FROM samples
"""

SELECT_SUBSCRIPTIONS = "SELECT status, count(*) AS count FROM subscriptions GROUP BY status ORDER BY status"

SELECT_SUBSCRIPTION_ISSUES = """
SELECT (SELECT count(*) FROM illegal_transitions WHERE reviewed_at IS NULL) AS illegal_open,
       count(*) AS pushes_pending,
       extract(epoch FROM now() - min(updated_at))::float8 AS oldest_push_seconds
FROM entitlement_pushes WHERE pending
"""

SELECT_LUCKY_NUMBERS = """
SELECT (SELECT coalesce(sum(issued_count), 0) FROM draws)::bigint AS issued,
       (SELECT count(*) FROM lucky_number_grants WHERE draw_id IS NULL) AS grants_waiting
"""

# The next draw is the earliest one not finished yet, whether its cut-off has passed or not.
SELECT_NEXT_DRAW = """
SELECT id, title, status, scheduled_at, cutoff_at, issued_count AS issued_numbers
FROM draws WHERE status IN ('scheduled', 'closed', 'drawing')
ORDER BY scheduled_at, id
LIMIT 1
"""

SELECT_LAST_DRAW = """
SELECT id, title, scheduled_at, started_at, completed_at,
       extract(epoch FROM completed_at - started_at)::float8 AS duration_seconds
FROM draws WHERE status = 'completed' AND completed_at IS NOT NULL
ORDER BY completed_at DESC, id
LIMIT 1
"""


async def read_figures(
    connection: asyncpg.Connection, partners: list[str], consumers: list[str]
) -> Figures:
    """Read every figure in the caller's transaction.

    `partners` and `consumers` are listed even with no rows, so a silent one shows as zero.
    """
    generated_at = await connection.fetchval("SELECT now()")
    return Figures(
        generated_at=generated_at,
        webhooks=await _webhooks(connection, partners),
        outbox=await _outbox(connection),
        deliveries=await _deliveries(connection, consumers),
        dead_letters=await _dead_letters(connection, consumers),
        latency=await _latency(connection),
        subscriptions=await _subscriptions(connection),
        lucky_numbers=LuckyNumberFigures(**dict(await connection.fetchrow(SELECT_LUCKY_NUMBERS))),
        next_draw=await _optional(connection, SELECT_NEXT_DRAW, NextDraw),
        last_draw=await _optional(connection, SELECT_LAST_DRAW, LastDraw),
    )


async def _webhooks(connection: asyncpg.Connection, partners: list[str]) -> list[PartnerWebhooks]:
    rows = await connection.fetch(SELECT_WEBHOOKS, RECENT_SECONDS, HOUR_SECONDS)
    counts = {row["partner"]: row for row in rows}

    result = []
    for partner in sorted(set(partners) | counts.keys()):
        row = counts.get(partner)
        last_5_minutes = row["last_5_minutes"] if row else 0
        last_hour = row["last_hour"] if row else 0
        result.append(PartnerWebhooks(partner=partner, last_5_minutes=last_5_minutes, last_hour=last_hour))
    return result


async def _outbox(connection: asyncpg.Connection) -> OutboxFigures:
    row = await connection.fetchrow(SELECT_OUTBOX)
    return OutboxFigures(unpublished=row["unpublished"], oldest_unpublished_seconds=row["oldest_seconds"])


async def _deliveries(connection: asyncpg.Connection, consumers: list[str]) -> list[ConsumerDeliveries]:
    rows = {row["consumer"]: row for row in await connection.fetch(SELECT_DELIVERIES)}
    return [
        ConsumerDeliveries(
            consumer=consumer,
            pending=rows[consumer]["pending"] if consumer in rows else 0,
            oldest_pending_seconds=rows[consumer]["oldest_seconds"] if consumer in rows else None,
        )
        for consumer in sorted(set(consumers) | rows.keys())
    ]


async def _dead_letters(connection: asyncpg.Connection, consumers: list[str]) -> list[ConsumerDeadLetters]:
    rows = {row["consumer"]: row for row in await connection.fetch(SELECT_DEAD_LETTERS)}
    return [
        ConsumerDeadLetters(
            consumer=consumer,
            open=rows[consumer]["open"] if consumer in rows else 0,
            oldest_seconds=rows[consumer]["oldest_seconds"] if consumer in rows else None,
        )
        for consumer in sorted(set(consumers) | rows.keys())
    ]


async def _latency(connection: asyncpg.Connection) -> LatencyFigures:
    row = await connection.fetchrow(SELECT_LATENCY, RECENT_SECONDS, LATENCY_SAMPLE_LIMIT)
    return LatencyFigures(
        window_seconds=RECENT_SECONDS,
        sample_limit=LATENCY_SAMPLE_LIMIT,
        applied=row["applied"],
        not_applied=row["not_applied"],
        p50_ms=row["p50_ms"],
        p99_ms=row["p99_ms"],
    )


async def _subscriptions(connection: asyncpg.Connection) -> SubscriptionFigures:
    by_status = [StatusCount(**dict(row)) for row in await connection.fetch(SELECT_SUBSCRIPTIONS)]
    issues = await connection.fetchrow(SELECT_SUBSCRIPTION_ISSUES)
    return SubscriptionFigures(
        by_status=by_status,
        total=sum(item.count for item in by_status),
        illegal_transitions_open=issues["illegal_open"],
        entitlement_pushes_pending=issues["pushes_pending"],
        oldest_entitlement_push_seconds=issues["oldest_push_seconds"],
    )


async def _optional(connection: asyncpg.Connection, query: str, model: type[Model]) -> Model | None:
    row = await connection.fetchrow(query)
    return model(**dict(row)) if row is not None else None
