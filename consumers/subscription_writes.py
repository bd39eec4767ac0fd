"""Writing the effects of one applied subscription fact in a single statement.

A changed state, its history row, the `SubscriptionChanged` event with its deliveries, the lucky
numbers issued and the subscriber's notices used to take one round trip each. `SubscriptionWrite`
collects them and `write` sends one statement of data-modifying CTEs, each of which inserts
nothing when its part is absent. Foreign keys between sibling CTEs (history to subscription,
delivery to outbox event) are checked at the end of the statement, when both rows exist.
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from consumers.subscription_notices import WORK_CHANNEL, Notice
from festival import wakeups
from festival.domain.subscriptions import Decision, Fact, SubscriptionState, state_to_json
from festival.outbox import OutboxRow

WRITE = """
WITH saved_state AS (
    INSERT INTO subscriptions AS s
        (ref, user_id, plan, status, current_period_end, version, last_event_at, evidence, access, access_until)
    SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 WHERE $4::text IS NOT NULL
    ON CONFLICT (ref) DO UPDATE SET
        user_id = EXCLUDED.user_id, plan = EXCLUDED.plan, status = EXCLUDED.status,
        current_period_end = EXCLUDED.current_period_end, version = EXCLUDED.version,
        last_event_at = EXCLUDED.last_event_at, evidence = EXCLUDED.evidence, access = EXCLUDED.access,
        access_until = EXCLUDED.access_until, updated_at = now()
    RETURNING s.ref
), history AS (
    INSERT INTO subscription_history (subscription_ref, event_id, from_status, to_status, reason, occurred_at, fact)
    SELECT saved_state.ref, $11, $12, $4, $13, $14, $15 FROM saved_state
), event AS (
    INSERT INTO outbox (event_id, topic, envelope, retain)
    SELECT $16, $17, $18, false WHERE $16::uuid IS NOT NULL
    RETURNING event_id
), deliveries AS (
    INSERT INTO deliveries (event_id, consumer, due_at)
    SELECT event.event_id, consumer, $20 FROM event, unnest($19::text[]) AS consumer
), numbers AS (
    INSERT INTO lucky_numbers (draw_id, number, subscription_ref, charge_id)
    SELECT $21, number, $1, $22 FROM unnest($23::bigint[]) AS number
), notices AS (
    INSERT INTO notifications (subscription_ref, kind, body)
    SELECT $1, kind, body FROM unnest($24::text[], $25::text[]) AS notice (kind, body)
)
SELECT pg_notify($26, $1) WHERE $27 AND cardinality($24::text[]) > 0
"""


@dataclass
class SubscriptionWrite:
    """The effects of one fact on subscription `ref`, to be written together by `write`."""

    ref: str
    state: SubscriptionState | None = None
    history: tuple[UUID, str | None, str, datetime, str] | None = None
    event: OutboxRow | None = None
    numbers: tuple[UUID, str, list[int]] | None = None
    notices: list[Notice] = field(default_factory=list)

    def save_state(self, decision: Decision, state: SubscriptionState, fact: Fact, event_id: UUID, reason: str) -> None:
        """Store `state` and the history row of the transition that `fact`, carried by `event_id`, caused."""
        self.state = state
        self.history = (event_id, decision.previous_status, reason, fact.occurred_at, decision.transition)

    def issue_numbers(self, draw_id: UUID, charge_id: str, numbers: list[int]) -> None:
        self.numbers = (draw_id, charge_id, numbers)

    @property
    def empty(self) -> bool:
        return self.state is None and self.event is None and self.numbers is None and not self.notices

    async def write(self, connection: asyncpg.Connection) -> None:
        """Write every collected effect in one statement, inside the caller's transaction.

        The relay is woken when an event is written and the pusher when a notice is, after the
        commit inside `wakeups.deferred()` and on commit elsewhere (the outbox trigger and
        `pg_notify`).
        """
        if self.empty:
            return
        if self.event is not None:
            wakeups.request(wakeups.OUTBOX_CHANNEL)
        notify_now = not (self.notices and wakeups.request(WORK_CHANNEL))
        await connection.execute(
            WRITE, *self._state_arguments(), *self._event_arguments(), *self._other_arguments(), notify_now
        )

    def _state_arguments(self) -> list[Any]:
        state, history = self.state, self.history
        if state is None or history is None:
            return [self.ref, *[None] * 14]
        event_id, from_status, reason, occurred_at, transition = history
        return [
            self.ref, state.user_id, state.plan, state.status, state.current_period_end, state.version,
            state.last_event_at, state_to_json(state), state.access, state.until,
            event_id, from_status, reason, occurred_at, transition,
        ]

    def _event_arguments(self) -> list[Any]:
        event = self.event
        if event is None:
            return [None, None, None, [], None]
        return [event.event_id, event.topic, event.envelope, event.consumers, event.due_at]

    def _other_arguments(self) -> list[Any]:
        draw_id, charge_id, numbers = self.numbers if self.numbers is not None else (None, None, [])
        kinds = [kind for kind, _ in self.notices]
        bodies = [body for _, body in self.notices]
        return [draw_id, charge_id, numbers, kinds, bodies, WORK_CHANNEL]
