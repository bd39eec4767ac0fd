"""The platform's OpenTelemetry instruments, and the outbox sampler behind its observable gauges.

Instruments come from the global meter provider. Until `festival.telemetry.configure` installs
one (or when telemetry is off) they are no-ops that cost a function call. Attributes carry
partner names, reasons, relative topics and consumer names only: low cardinality and never
personal data.
"""

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

import asyncpg
from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from broker import topics

logger = logging.getLogger(__name__)

_meter = metrics.get_meter("festival")

# Seconds, from 1 ms to 1 min: webhook-to-applied latency and draw durations fall in this range.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
DRAW_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)

webhooks = _meter.create_counter(
    "festival.webhooks",
    unit="{webhook}",
    description="Partner webhook responses, by partner, outcome (accepted, duplicate, rejected) and reason",
)
events_published = _meter.create_counter(
    "festival.events.published",
    unit="{event}",
    description="Events the relay published to the broker, by topic; redeliveries are marked",
)
events_applied = _meter.create_counter(
    "festival.events.applied",
    unit="{event}",
    description="Events a consumer applied, by consumer and topic (duplicates are not counted)",
)
events_failed = _meter.create_counter(
    "festival.events.failed",
    unit="{event}",
    description="Handler runs that failed and will be retried, by consumer and topic",
)
dead_letters = _meter.create_counter(
    "festival.dead_letters",
    unit="{event}",
    description="Events moved to the dead letters after repeated failures, by consumer and topic",
)
event_latency = _meter.create_histogram(
    "festival.event.latency",
    unit="s",
    description="Time from an event's creation (the webhook's arrival) until a consumer applied it",
    explicit_bucket_boundaries_advisory=list(LATENCY_BUCKETS),
)
draw_duration = _meter.create_histogram(
    "festival.draw.duration",
    unit="s",
    description="Time a draw takes from start to its last step, recorded by the draws consumer",
    explicit_bucket_boundaries_advisory=list(DRAW_BUCKETS),
)
screen_connections = _meter.create_up_down_counter(
    "festival.screen.connections",
    unit="{connection}",
    description="Live draw screens connected now, by transport (sse for the gateway's fallback)",
)


def topic_attribute(topic: str, root: str) -> str:
    """Return `topic` relative to `root`, with draw ids replaced by `{draw_id}` to bound cardinality."""
    try:
        relative = topics.relative_to(root, topic)
    except ValueError:
        relative = topic
    parts = relative.split("/")
    if len(parts) == 3 and parts[0] == "draws":
        return f"draws/{{draw_id}}/{parts[2]}"
    return relative


def record_draw_duration(seconds: float, *, mode: str) -> None:
    """Record one finished draw; `mode` is the draw's mode, such as `seed` or `loteria_federal`."""
    draw_duration.record(seconds, {"festival.draw.mode": mode})


@dataclass
class OutboxSample:
    backlog: int
    oldest_age_seconds: float
    taken_at: float


class OutboxSampler:
    """Reads the outbox backlog from PostgreSQL now and then; the gauges report the last sample.

    Gauge callbacks run on the metric reader's thread, where no asyncpg connection can be used,
    so an asyncio task samples and the callbacks only read the result. A sample older than
    `stale_after` seconds is not reported, so a stopped sampler shows as missing data.
    """

    # Counting stops here: past it the backlog is reported as this many.
    COUNT_LIMIT = 100_000

    def __init__(self, stale_after: float = 60.0) -> None:
        self.latest: OutboxSample | None = None
        self.stale_after = stale_after

    async def sample(self, pool: asyncpg.Pool) -> OutboxSample:
        """Count unpublished events (up to `COUNT_LIMIT`) and read the age of the oldest one."""
        async with pool.acquire() as connection:
            # Both queries read the partial index on unpublished rows.
            backlog = await connection.fetchval(
                "SELECT count(*) FROM (SELECT 1 FROM outbox WHERE published_at IS NULL LIMIT $1) AS unpublished",
                self.COUNT_LIMIT,
            )
            age = await connection.fetchval(
                "SELECT extract(epoch FROM now() - created_at)::float8 FROM outbox"
                " WHERE published_at IS NULL ORDER BY position LIMIT 1"
            )
        self.latest = OutboxSample(int(backlog), float(age or 0.0), time.monotonic())
        return self.latest

    async def run(self, pool: asyncpg.Pool, interval: float) -> None:
        """Sample every `interval` seconds until cancelled; a failed sample is logged and retried."""
        logger.info("outbox sampler started interval=%.1fs", interval)
        try:
            while True:
                try:
                    await self.sample(pool)
                except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as error:
                    logger.warning("outbox sample failed error=%r retry_in=%.1fs", error, interval)
                await asyncio.sleep(interval)
        finally:
            logger.info("outbox sampler stopped")

    def _fresh(self) -> OutboxSample | None:
        latest = self.latest
        if latest is None or time.monotonic() - latest.taken_at > self.stale_after:
            return None
        return latest

    def observe_backlog(self, options: CallbackOptions) -> Iterable[Observation]:
        latest = self._fresh()
        return [Observation(latest.backlog)] if latest else []

    def observe_oldest_age(self, options: CallbackOptions) -> Iterable[Observation]:
        latest = self._fresh()
        return [Observation(latest.oldest_age_seconds)] if latest else []


outbox_sampler = OutboxSampler()

_meter.create_observable_gauge(
    "festival.outbox.backlog",
    callbacks=[outbox_sampler.observe_backlog],
    unit="{event}",
    description="Events stored in the outbox and not published yet (sampled by the relay)",
)
_meter.create_observable_gauge(
    "festival.outbox.oldest_age",
    callbacks=[outbox_sampler.observe_oldest_age],
    unit="s",
    description="Age of the oldest unpublished event in the outbox, 0 when it is empty (sampled by the relay)",
)
