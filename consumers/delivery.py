"""Applying one delivered event exactly once, with failures counted and dead-lettered in PostgreSQL.

MQTT acknowledgements cannot guarantee completeness here (FastStream's subscriber acknowledges a
message whose handler raised, and may acknowledge before the handler runs), so PostgreSQL decides:
the consumer marks its `deliveries` row applied in the transaction of the event's effects, and the
relay publishes again every delivery still pending after its due time.
"""

import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import asyncpg
from opentelemetry import trace
from pydantic import ValidationError

from broker import topics, tracing
from broker.envelope import Envelope, event_type
from consumers.delivery_batch import Batcher
from festival import wakeups
from festival.outbox import Outbox
from festival.telemetry_metrics import dead_letters, event_latency, events_applied, events_failed, topic_attribute

logger = logging.getLogger(__name__)

Apply = Callable[[asyncpg.Connection, Envelope], Awaitable[None]]
# Returns the advisory lock key an event's effects take (see `consumers.delivery_batch`), or None
# for an event that must be applied alone.
LockKey = Callable[[Envelope], str | None]

# Claims a pending delivery and returns a row only when it was pending. The setting tells the outbox
# trigger whether this transaction wakes the relay after its commit (`festival.wakeups`).
CLAIM = """
WITH claimed AS (
    UPDATE deliveries SET status = 'applied', applied_at = now(), last_error = NULL
    WHERE event_id = $1 AND consumer = $2 AND status = 'pending'
    RETURNING event_id
)
SELECT set_config('festival.defer_notify', $3, true) FROM claimed
"""

# Lock conflicts between concurrent handlers are retried at once, before counting as a failure.
RETRIED_AT_ONCE = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
IMMEDIATE_RETRIES = 3
# Exceptions that mean the database is unreachable: nothing can be recorded, so the relay's
# redelivery takes over once it is back.
DATABASE_DOWN = (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError)


class Outcome(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    UNTRACKED = "untracked"
    FAILED = "failed"
    DEAD = "dead"
    INVALID = "invalid"


@dataclass(frozen=True)
class DeliveryPolicy:
    max_attempts: int
    retry_after: float


class DeliveryHandler:
    """Runs `apply` for each event addressed to `consumer`, once per event.

    With `lock_key`, events that arrive while delivery transactions run are applied together
    (`consumers.delivery_batch`); `close` stops that work. With `notify_after_commit`, the
    transactions wake their listeners after the commit (`festival.wakeups`): `apply` must then
    request every wakeup it needs, as `Outbox.enqueue` and `SubscriptionWrite` do.
    """

    def __init__(
        self,
        consumer: str,
        apply: Apply,
        pool: asyncpg.Pool,
        outbox: Outbox,
        policy: DeliveryPolicy,
        *,
        lock_key: LockKey | None = None,
        notify_after_commit: bool = False,
    ) -> None:
        self.consumer = consumer
        self.apply = apply
        self.pool = pool
        self.outbox = outbox
        self.policy = policy
        self.lock_key = lock_key
        self.notify_after_commit = notify_after_commit
        self._defer_setting = "on" if notify_after_commit else "off"
        self._batcher = (
            Batcher(consumer, pool, apply, self._handle, Outcome.APPLIED, self._wakeups, self._defer_setting)
            if lock_key
            else None
        )

    async def close(self) -> None:
        if self._batcher is not None:
            await self._batcher.close()

    async def handle(self, payload: bytes, topic: str, properties: Mapping[str, Any] | None = None) -> Outcome:
        """Apply one delivered message inside a CONSUMER span; `properties` are its MQTT 5 user properties."""
        try:
            envelope = Envelope.from_json(payload)
        except ValidationError as error:
            # Not written by the relay, so there is no delivery row to count it against.
            logger.error("invalid envelope consumer=%s topic=%s error_count=%d", self.consumer, topic, error.error_count())
            return Outcome.INVALID

        lock_key = self.lock_key(envelope) if self.lock_key is not None else None
        with tracing.process_span(
            envelope, topic, consumer=self.consumer, properties=properties, body_size=len(payload)
        ) as span:
            if self._batcher is not None and lock_key is not None:
                outcome = await self._batcher.submit(envelope, topic, lock_key)
            else:
                outcome = await self._handle(envelope, topic)
            tracing.record_outcome(span, outcome, failed=outcome in (Outcome.FAILED, Outcome.DEAD))
        self._record_metrics(envelope, topic, outcome)
        return outcome

    def _record_metrics(self, envelope: Envelope, topic: str, outcome: Outcome) -> None:
        attributes = {"festival.consumer": self.consumer, "festival.topic": topic_attribute(topic, self.outbox.topic_root)}
        if outcome is Outcome.APPLIED:
            events_applied.add(1, attributes)
            # The envelope's time is set when the gateway stores the event, as the webhook arrives.
            event_latency.record(max((datetime.now(UTC) - envelope.time).total_seconds(), 0.0), attributes)
        elif outcome is Outcome.FAILED:
            events_failed.add(1, attributes)
        elif outcome is Outcome.DEAD:
            events_failed.add(1, attributes)
            dead_letters.add(1, attributes)

    async def _handle(self, envelope: Envelope, topic: str) -> Outcome:
        for attempt in range(1, IMMEDIATE_RETRIES + 1):
            try:
                return await self._apply_once(envelope)
            except RETRIED_AT_ONCE as error:
                logger.warning(
                    "lock conflict consumer=%s event_id=%s attempt=%d error=%r",
                    self.consumer, envelope.id, attempt, error,
                )
            except DATABASE_DOWN as error:
                tracing.record_error(trace.get_current_span(), type(error).__qualname__)
                logger.warning(
                    "database unavailable consumer=%s event_id=%s error=%r; the relay will redeliver",
                    self.consumer, envelope.id, error,
                )
                return Outcome.FAILED
            except Exception as error:
                logger.exception("apply failed consumer=%s event_id=%s type=%s", self.consumer, envelope.id, envelope.type)
                tracing.record_error(trace.get_current_span(), type(error).__qualname__)
                return await self._record_failure(envelope, topic, error)
        return await self._record_failure(envelope, topic, RuntimeError("lock conflicts persisted"))

    async def _apply_once(self, envelope: Envelope) -> Outcome:
        with self._wakeups() as channels:
            async with self.pool.acquire() as connection:
                async with connection.transaction():
                    # The row lock taken here also serialises two copies of one event arriving at once.
                    claimed = await connection.fetchval(CLAIM, envelope.id, self.consumer, self._defer_setting)
                    if claimed is None:
                        return await self._unclaimed_outcome(connection, envelope)

                    await self.apply(connection, envelope)
                await wakeups.send(connection, channels)
        logger.debug("applied consumer=%s event_id=%s type=%s", self.consumer, envelope.id, envelope.type)
        return Outcome.APPLIED

    def _wakeups(self) -> contextlib.AbstractContextManager[set[str]]:
        return wakeups.deferred() if self.notify_after_commit else contextlib.nullcontext(set())

    async def _unclaimed_outcome(self, connection: asyncpg.Connection, envelope: Envelope) -> Outcome:
        status = await connection.fetchval(
            "SELECT status FROM deliveries WHERE event_id = $1 AND consumer = $2", envelope.id, self.consumer
        )
        if status is None:
            logger.warning("untracked event ignored consumer=%s event_id=%s type=%s", self.consumer, envelope.id, envelope.type)
            return Outcome.UNTRACKED
        logger.debug("duplicate ignored consumer=%s event_id=%s status=%s", self.consumer, envelope.id, status)
        return Outcome.DUPLICATE

    async def _record_failure(self, envelope: Envelope, topic: str, error: BaseException) -> Outcome:
        reason = f"{type(error).__name__}: {error}"[:1000]
        try:
            async with self.pool.acquire() as connection, connection.transaction():
                attempts = await connection.fetchval(
                    "UPDATE deliveries SET attempts = attempts + 1, last_error = $3,"
                    " due_at = now() + make_interval(secs => $4)"
                    " WHERE event_id = $1 AND consumer = $2 AND status = 'pending' RETURNING attempts",
                    envelope.id, self.consumer, reason, self.policy.retry_after,
                )
                if attempts is None or attempts < self.policy.max_attempts:
                    return Outcome.FAILED

                await self._dead_letter(connection, envelope, topic, reason, attempts)
        except DATABASE_DOWN as db_error:
            logger.warning("failure not recorded consumer=%s event_id=%s error=%r", self.consumer, envelope.id, db_error)
            return Outcome.FAILED
        logger.error("dead-lettered consumer=%s event_id=%s attempts=%d", self.consumer, envelope.id, attempts)
        return Outcome.DEAD

    async def _dead_letter(self, connection: asyncpg.Connection, envelope: Envelope, topic: str, reason: str, attempts: int) -> None:
        await connection.execute(
            "UPDATE deliveries SET status = 'dead' WHERE event_id = $1 AND consumer = $2", envelope.id, self.consumer
        )
        dead_letter_id = await connection.fetchval(
            "INSERT INTO dead_letters (event_id, consumer, topic, error, attempts) VALUES ($1, $2, $3, $4, $5) RETURNING id",
            envelope.id, self.consumer, topic, reason, attempts,
        )
        trace_fields = tracing.current_trace_fields()
        notice = Envelope(
            source=f"/consumers/{self.consumer}",
            type=event_type("dead_letter.recorded"),
            subject=str(envelope.id),
            time=datetime.now(UTC),
            data={
                "dead_letter_id": dead_letter_id,
                "consumer": self.consumer,
                "event_id": str(envelope.id),
                "event_type": envelope.type,
                "attempts": attempts,
                # Only the exception class goes on the bus: a message can quote the row that
                # failed. The full reason is in the `dead_letters` table for operators.
                "error": reason.split(":", 1)[0],
            },
            traceparent=trace_fields.get(tracing.TRACEPARENT),
            tracestate=trace_fields.get(tracing.TRACESTATE),
        )
        await self.outbox.enqueue(connection, topics.dead_letters(self.consumer), notice)
