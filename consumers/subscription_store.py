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
from uuid import UUID

import asyncpg

from consumers import lucky_numbers
from consumers.subscription_notices import WORK_CHANNEL, notify_lucky_numbers, notify_transition
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
    state_to_json,
)
from festival.outbox import Outbox
from festival.settings import Settings
from schemas.events import SubscriptionChanged

logger = logging.getLogger(__name__)

LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('subscription:' || $1, 0))"
TRY_LOCK = "SELECT pg_try_advisory_xact_lock(hashtextextended('subscription:' || $1, 0))"

SELECT_STATE = "SELECT evidence, version FROM subscriptions WHERE ref = $1"

UPSERT_STATE = """
INSERT INTO subscriptions AS s
    (ref, user_id, plan, status, current_period_end, version, last_event_at, evidence, access, access_until)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (ref) DO UPDATE SET
    user_id = EXCLUDED.user_id, plan = EXCLUDED.plan, status = EXCLUDED.status,
    current_period_end = EXCLUDED.current_period_end, version = EXCLUDED.version,
    last_event_at = EXCLUDED.last_event_at, evidence = EXCLUDED.evidence, access = EXCLUDED.access,
    access_until = EXCLUDED.access_until, updated_at = now()
"""

INSERT_HISTORY = """
INSERT INTO subscription_history (subscription_ref, event_id, from_status, to_status, reason, occurred_at, fact)
VALUES ($1, $2, $3, $4, $5, $6, $7)
"""

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


async def lock(connection: asyncpg.Connection, subscription_ref: str) -> None:
    """Wait for the subscription's lock, held until the transaction ends (it may not have a row yet)."""
    await connection.execute(LOCK, subscription_ref)


async def try_lock(connection: asyncpg.Connection, subscription_ref: str) -> bool:
    """Take the subscription's lock if no one holds it; return whether it was taken."""
    return bool(await connection.fetchval(TRY_LOCK, subscription_ref))


async def load(connection: asyncpg.Connection, subscription_ref: str) -> SubscriptionState | None:
    """Return the stored state, or None for a subscription the state machine has not seen."""
    row = await connection.fetchrow(SELECT_STATE, subscription_ref)
    if row is None or not row["evidence"]:
        # NOTE: a row written before migration 0004 has no evidence and is rebuilt from the next
        # lifecycle event, with its version starting again at 1.
        return None
    return state_from_json(row["evidence"])


async def wake_pusher(connection: asyncpg.Connection, subscription_ref: str) -> None:
    """Notify the pusher; PostgreSQL delivers it only if the transaction commits."""
    await connection.execute("SELECT pg_notify($1, $2)", WORK_CHANNEL, subscription_ref)


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
        await lock(connection, fact.subscription_ref)
        state = await load(connection, fact.subscription_ref)
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

        issued = None
        if isinstance(fact, ChargePaid):
            issued = await self._issue_lucky_numbers(connection, fact)
        issued_count = len(issued.numbers) if issued is not None else 0

        if decision.changed:
            assert decision.state is not None  # a changed decision always carries its state
            await self._save(connection, decision, decision.state, fact, event_id, issued_count)
            await notify_transition(connection, decision, decision.state, fact, self.grace_period)
        else:
            logger.debug("fact changes nothing subscription_ref=%s event_id=%s fact=%s", ref, event_id, decision.transition)

        if issued is not None and issued.draw_id is not None:
            await notify_lucky_numbers(connection, ref, issued.draw_id, issued.numbers)
        return decision

    async def _save(
        self,
        connection: asyncpg.Connection,
        decision: Decision,
        state: SubscriptionState,
        fact: Fact,
        event_id: UUID,
        lucky_numbers_issued: int,
    ) -> None:
        ref = state.subscription_ref
        await connection.execute(
            UPSERT_STATE,
            ref, state.user_id, state.plan, state.status, state.current_period_end, state.version,
            state.last_event_at, state_to_json(state), state.access, state.until,
        )

        reason = f"{decision.transition}: {decision.reason}"
        await connection.execute(
            INSERT_HISTORY, ref, event_id, decision.previous_status, state.status, reason, fact.occurred_at, decision.transition
        )

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
        await self.outbox.publish(connection, changed, source=self.source, subject=ref)
        logger.info(
            "subscription changed subscription_ref=%s event_id=%s fact=%s from_status=%s to_status=%s version=%d",
            ref, event_id, decision.transition, decision.previous_status, state.status, state.version,
        )

    async def _issue_lucky_numbers(self, connection: asyncpg.Connection, fact: ChargePaid) -> lucky_numbers.Issued | None:
        """Issue the numbers a confirmed payment earns, once per charge; return None if none are due."""
        payment = await connection.fetchrow(
            "SELECT p.status, g.charge_id IS NOT NULL AS granted FROM payments p"
            " LEFT JOIN lucky_number_grants g USING (charge_id) WHERE p.charge_id = $1",
            fact.charge_id,
        )
        if payment is None or payment["granted"] or payment["status"] != "confirmed":
            # Refunded or charged back before it was applied, or issued already: nothing to issue.
            return None

        quantity = lucky_numbers.quantity_for(fact.amount, self.lucky_number_price)
        issued = await lucky_numbers.issue(connection, fact.charge_id, fact.subscription_ref, quantity)
        logger.info(
            "lucky numbers issued subscription_ref=%s charge_id=%s draw_id=%s count=%d",
            fact.subscription_ref, fact.charge_id, issued.draw_id, len(issued.numbers),
        )
        return issued

    async def _release_held(self, connection: asyncpg.Connection, state: SubscriptionState) -> None:
        """Apply the facts held for a subscription that has just been created."""
        rows = await connection.fetch(RELEASE_HELD, state.subscription_ref)
        for row in sorted(rows, key=lambda item: (item["occurred_at"], item["event_id"])):
            fact = fact_from_json(row["fact"])
            decision = await self._apply_locked(connection, state, fact, UUID(row["event_id"]))
            state = decision.state or state
        if rows:
            logger.info("held facts applied subscription_ref=%s count=%d", state.subscription_ref, len(rows))
