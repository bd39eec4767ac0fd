"""Applying subscription facts to PostgreSQL through the pure state machine.

Every consumer that learns something about a subscription (payments from NIX, lifecycle events
from REDETV!PLUS, the expiry job's checks) calls `SubscriptionStore.apply_fact` inside its
delivery transaction. It serialises facts per subscription with a transaction-level advisory lock,
which also covers a subscription that has no row yet, and then:

- keeps a payment fact for an unknown subscription in `held_payments`;
- stores an illegal transition in `illegal_transitions` and applies nothing;
- stores a changed state (`state_to_json`), a history row, a `SubscriptionChanged` event and the
  subscriber's notifications, all in the caller's transaction;
- issues the lucky numbers of a payment once the payment is applied (never while it is held);
- applies the held facts of a subscription in the transaction that creates it.
"""

import logging
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg

from broker.envelope import Envelope
from consumers import lucky_numbers
from consumers.subscription_notices import lucky_numbers_notice, transition_notice
from consumers.subscription_writes import SubscriptionWrite
from festival.domain.subscriptions import (
    DEFAULT_GRACE_PERIOD,
    ChargePaid,
    Decision,
    Fact,
    SubscriptionState,
    apply,
    fact_from_json,
    fact_to_json,
    state_from_json,
)
from festival.outbox import Outbox, envelope_for
from festival.settings import Settings
from schemas.events import SubscriptionChanged

logger = logging.getLogger(__name__)

LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('subscription:' || $1, 0))"
TRY_LOCK = "SELECT pg_try_advisory_xact_lock(hashtextextended('subscription:' || $1, 0))"

# Takes LOCK and then reads the evidence in a new snapshot, in one round trip (migration 0010).
LOCK_AND_LOAD = "SELECT lock_subscription($1)"

INSERT_HELD = """
INSERT INTO held_payments (event_id, subscription_ref, fact, occurred_at) VALUES ($1, $2, $3, $4)
ON CONFLICT (event_id) DO NOTHING
"""

RELEASE_HELD = "DELETE FROM held_payments WHERE subscription_ref = $1 RETURNING event_id, fact, occurred_at"

INSERT_ILLEGAL = """
INSERT INTO illegal_transitions (subscription_ref, event_id, from_status, fact, reason, occurred_at)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (subscription_ref, event_id) DO NOTHING
"""


def lock_key(subscription_ref: str) -> str:
    """Return the text whose hash is the subscription's advisory lock key, as LOCK computes it."""
    return f"subscription:{subscription_ref}"


def event_lock_key(envelope: Envelope) -> str | None:
    """Return the lock key of the subscription an event's data names, for `DeliveryHandler`."""
    subscription_ref = envelope.data.get("subscription_ref")
    return lock_key(subscription_ref) if isinstance(subscription_ref, str) else None


async def lock(connection: asyncpg.Connection, subscription_ref: str) -> None:
    """Wait for the subscription's lock, held until the transaction ends (it may not have a row yet)."""
    await connection.execute(LOCK, subscription_ref)


async def try_lock(connection: asyncpg.Connection, subscription_ref: str) -> bool:
    """Take the subscription's lock if no one holds it; return whether it was taken."""
    return bool(await connection.fetchval(TRY_LOCK, subscription_ref))


async def lock_and_load(connection: asyncpg.Connection, subscription_ref: str) -> SubscriptionState | None:
    """Take the subscription's lock like `lock`, then return its stored state (None if unknown)."""
    return state_from_evidence(await connection.fetchval(LOCK_AND_LOAD, subscription_ref))


def state_from_evidence(evidence: dict[str, Any] | None) -> SubscriptionState | None:
    """Return the state that a `subscriptions.evidence` value stores, or None for an unseen subscription."""
    if not evidence:
        # NOTE: a row written before migration 0004 has no evidence and is rebuilt from the next
        # lifecycle event, with its version starting again at 1.
        return None
    return state_from_json(evidence)


@dataclass(frozen=True)
class SubscriptionStore:
    outbox: Outbox
    source: str
    lucky_number_price: Decimal
    grace_period: timedelta = DEFAULT_GRACE_PERIOD

    @classmethod
    def from_settings(cls, settings: Settings, *, source: str) -> "SubscriptionStore":
        return cls(Outbox.from_settings(settings), source, settings.lucky_number_price)

    async def apply_fact(self, connection: asyncpg.Connection, fact: Fact, *, event_id: UUID) -> Decision:
        """Apply `fact` under the subscription's lock; call inside the caller's transaction.

        `event_id` is the platform event that carried the fact; history rows refer to it.
        """
        state = await lock_and_load(connection, fact.subscription_ref)
        return await self.apply_loaded(connection, state, fact, event_id=event_id)

    async def apply_loaded(
        self, connection: asyncpg.Connection, state: SubscriptionState | None, fact: Fact, *, event_id: UUID
    ) -> Decision:
        """Like `apply_fact`, for a caller that took the lock and loaded `state` in this transaction."""
        decision = await self._apply_locked(connection, state, fact, event_id)

        if state is None and decision.state is not None:
            await self._release_held(connection, decision.state)
        return decision

    async def _apply_locked(
        self, connection: asyncpg.Connection, state: SubscriptionState | None, fact: Fact, event_id: UUID
    ) -> Decision:
        ref = fact.subscription_ref
        decision = apply(state, fact, grace_period=self.grace_period)

        if decision.hold:
            await connection.execute(INSERT_HELD, fact.event_id, ref, fact_to_json(fact), fact.occurred_at)
            logger.info("fact held until the subscription appears subscription_ref=%s event_id=%s fact=%s", ref, event_id, decision.transition)
            return decision

        if decision.illegal is not None:
            illegal = decision.illegal
            await connection.execute(
                INSERT_ILLEGAL, ref, illegal.event_id, illegal.from_status, fact_to_json(fact), illegal.reason, illegal.occurred_at
            )
            logger.warning(
                "illegal transition recorded subscription_ref=%s event_id=%s fact=%s from_status=%s reason=%s",
                ref, event_id, illegal.fact, illegal.from_status, illegal.reason,
            )
            return decision

        # The numbers are reserved first: the `SubscriptionChanged` event counts them.
        reservation = None
        if isinstance(fact, ChargePaid):
            reservation = await self._reserve_lucky_numbers(connection, fact)
        issued_count = len(reservation.numbers) if reservation is not None else 0

        write = SubscriptionWrite(ref)
        if decision.changed:
            assert decision.state is not None  # a changed decision always carries its state
            self._save(write, decision, decision.state, fact, event_id, issued_count)
            notice = transition_notice(decision, decision.state, fact, self.grace_period)
            if notice is not None:
                write.notices.append(notice)
        else:
            logger.debug("fact changes nothing subscription_ref=%s event_id=%s fact=%s", ref, event_id, decision.transition)

        if reservation is not None and reservation.draw_id is not None:
            assert isinstance(fact, ChargePaid) and reservation.draw_title is not None and reservation.draw_scheduled_at is not None
            write.issue_numbers(reservation.draw_id, fact.charge_id, reservation.numbers)
            write.notices.append(lucky_numbers_notice(reservation.numbers, reservation.draw_title, reservation.draw_scheduled_at))
        await write.write(connection)
        return decision

    def _save(
        self,
        write: SubscriptionWrite,
        decision: Decision,
        state: SubscriptionState,
        fact: Fact,
        event_id: UUID,
        lucky_numbers_issued: int,
    ) -> None:
        ref = state.subscription_ref
        reason = f"{decision.transition}: {decision.reason}"
        write.save_state(decision, state, fact, event_id, reason)

        changed = SubscriptionChanged(
            subscription_ref=ref,
            user_id=state.user_id,
            status=state.status,
            previous_status=decision.previous_status,
            current_period_end=state.current_period_end,
            version=state.version,
            reason=reason,
            lucky_numbers_issued=lucky_numbers_issued,
        )
        envelope = envelope_for(changed, source=self.source, subject=ref)
        write.event = self.outbox.row(changed.TOPIC, envelope)
        logger.info(
            "subscription changed subscription_ref=%s event_id=%s fact=%s from_status=%s to_status=%s version=%d",
            ref, event_id, decision.transition, decision.previous_status, state.status, state.version,
        )

    async def _reserve_lucky_numbers(
        self, connection: asyncpg.Connection, fact: ChargePaid
    ) -> lucky_numbers.Reservation | None:
        """Reserve the numbers a confirmed payment earns, once per charge, and return None when none are due."""
        quantity = lucky_numbers.quantity_for(fact.amount, self.lucky_number_price)
        reservation = await lucky_numbers.reserve(connection, fact.charge_id, fact.subscription_ref, quantity)
        if reservation is None:
            # Refunded or charged back before it was applied, or issued already: nothing to issue.
            return None
        logger.info(
            "lucky numbers issued subscription_ref=%s charge_id=%s draw_id=%s count=%d",
            fact.subscription_ref, fact.charge_id, reservation.draw_id, len(reservation.numbers),
        )
        return reservation

    async def _release_held(self, connection: asyncpg.Connection, state: SubscriptionState) -> None:
        """Apply the facts held for a subscription that has just been created."""
        rows = await connection.fetch(RELEASE_HELD, state.subscription_ref)
        for row in sorted(rows, key=lambda item: (item["occurred_at"], item["event_id"])):
            fact = fact_from_json(row["fact"])
            decision = await self._apply_locked(connection, state, fact, UUID(row["event_id"]))
            state = decision.state or state
        if rows:
            logger.info("held facts applied subscription_ref=%s count=%d", state.subscription_ref, len(rows))
