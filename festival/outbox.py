"""Writing events to the outbox inside the caller's transaction."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from broker import topics
from broker.envelope import Envelope
from broker.tracing import TRACEPARENT, TRACESTATE, current_trace_fields
from festival import wakeups
from festival.settings import Settings
from schemas.events import EventData


def envelope_for(data: EventData, *, source: str, subject: str) -> Envelope:
    """Wrap canonical event data in a new envelope that carries the current trace context."""
    trace_fields = current_trace_fields()
    return Envelope(
        source=source,
        type=data.TYPE,
        subject=subject,
        data=data.model_dump(mode="json"),
        traceparent=trace_fields.get(TRACEPARENT),
        tracestate=trace_fields.get(TRACESTATE),
    )


# One round trip: the event and a pending delivery for each consumer. A foreign key of a row that
# a sibling CTE inserts is checked at the end of the statement, when the outbox row exists.
INSERT_EVENT = """
WITH event AS (
    INSERT INTO outbox (event_id, topic, envelope, retain) VALUES ($1, $2, $3, $4) RETURNING event_id
)
INSERT INTO deliveries (event_id, consumer, due_at)
SELECT event.event_id, consumer, $6 FROM event, unnest($5::text[]) AS consumer
"""


@dataclass(frozen=True)
class OutboxRow:
    """The values that enqueueing one envelope writes: the outbox row and who must apply it."""

    event_id: UUID
    topic: str
    envelope: dict[str, Any]
    consumers: list[str]
    due_at: datetime


@dataclass(frozen=True)
class Outbox:
    """Writes events for the relay; `topic_root` and the redelivery delay come from the settings."""

    topic_root: str
    redelivery_after: float

    @classmethod
    def from_settings(cls, settings: Settings) -> "Outbox":
        return cls(settings.topic_root, settings.redelivery_after_seconds)

    async def enqueue(
        self,
        connection: asyncpg.Connection,
        topic: str,
        envelope: Envelope,
        *,
        retain: bool = False,
    ) -> None:
        """Store `envelope` for the relay and a pending delivery for each consumer of `topic`.

        `topic` is relative to the root. Call this inside the transaction that records the
        event's cause, so both commit or neither does.
        """
        row = self.row(topic, envelope)
        await connection.execute(INSERT_EVENT, row.event_id, row.topic, row.envelope, retain, row.consumers, row.due_at)
        # Inside `wakeups.deferred()` the outbox trigger is silent: the relay is woken after the commit.
        wakeups.request(wakeups.OUTBOX_CHANNEL)

    def row(self, topic: str, envelope: Envelope) -> OutboxRow:
        """Return what `enqueue` writes for `envelope` on `topic`, for callers that batch it with other writes."""
        return OutboxRow(
            event_id=envelope.id,
            topic=topics.absolute(self.topic_root, topic),
            envelope=envelope.model_dump(mode="json", exclude_none=True),
            consumers=list(topics.CONSUMERS_BY_TOPIC.get(topic, ())),
            due_at=datetime.now(UTC) + timedelta(seconds=self.redelivery_after),
        )

    async def publish(
        self, connection: asyncpg.Connection, data: EventData, *, source: str, subject: str
    ) -> Envelope:
        """Enqueue canonical event data on its topic; return the envelope written."""
        envelope = envelope_for(data, source=source, subject=subject)
        await self.enqueue(connection, data.TOPIC, envelope)
        return envelope

    async def enqueue_envelopes(
        self, connection: asyncpg.Connection, entries: Sequence[tuple[str, Envelope]]
    ) -> None:
        """Like `enqueue` for several `(relative topic, envelope)` pairs, batched per table."""
        if not entries:
            return

        await connection.executemany(
            "INSERT INTO outbox (event_id, topic, envelope, retain) VALUES ($1, $2, $3, false)",
            [
                (
                    envelope.id,
                    topics.absolute(self.topic_root, topic),
                    envelope.model_dump(mode="json", exclude_none=True),
                )
                for topic, envelope in entries
            ],
        )
        wakeups.request(wakeups.OUTBOX_CHANNEL)

        due_at = datetime.now(UTC) + timedelta(seconds=self.redelivery_after)
        deliveries = [
            (envelope.id, consumer, due_at)
            for topic, envelope in entries
            for consumer in topics.CONSUMERS_BY_TOPIC.get(topic, ())
        ]
        if deliveries:
            await connection.executemany(
                "INSERT INTO deliveries (event_id, consumer, due_at) VALUES ($1, $2, $3)", deliveries
            )
