"""Subscriptions consumer: applies REDETV!PLUS lifecycle events and keeps REDETV!PLUS entitlements in sync.

- `subscriptions/updated` (a REDETV!PLUS event) goes through the state machine in `SubscriptionStore`.
- `subscriptions/changed` records, in the delivery transaction, the entitlement REDETV!PLUS should
  have now. The push itself happens after the commit, in `run_background`
  (`consumers.subscription_pusher`), so a slow or failing REDETV!PLUS never keeps a delivery
  transaction open.
"""

import logging
from datetime import UTC, datetime

import asyncpg

from broker.envelope import Envelope
from consumers.delivery import Apply
from consumers.entitlements import record_entitlement
from consumers.subscription_pusher import run_pusher
from consumers.subscription_store import SubscriptionStore, load, lock, wake_pusher
from festival.domain.subscriptions import entitlement
from festival.settings import Settings
from schemas.events import SubscriptionChanged, SubscriptionUpdated
from schemas.redetv import FACT_BY_EVENT

logger = logging.getLogger(__name__)

NAME = "subscriptions"
SOURCE = "/consumers/subscriptions"

# Links the wanted entitlement to the event it was recorded from. A replay of the dead-lettered
# event (the one a rejected push names) clears the rejection, so the push is tried again.
LINK_EVENT = """
UPDATE entitlement_pushes SET
    rejected_at = CASE WHEN event_id = $2 THEN NULL ELSE rejected_at END,
    event_id = CASE WHEN rejected_at IS NULL OR event_id = $2 THEN $2 ELSE event_id END
WHERE subscription_ref = $1
RETURNING pending AND rejected_at IS NULL AS pushable
"""


class SubscriptionsConsumer:
    def __init__(self, settings: Settings) -> None:
        self.store = SubscriptionStore.from_settings(settings, source=SOURCE)

    async def apply(self, connection: asyncpg.Connection, envelope: Envelope) -> None:
        if envelope.type == SubscriptionUpdated.TYPE:
            await self.apply_lifecycle_event(connection, envelope, SubscriptionUpdated.model_validate(envelope.data))
        elif envelope.type == SubscriptionChanged.TYPE:
            await self.record_expected_entitlement(connection, envelope, SubscriptionChanged.model_validate(envelope.data))
        else:
            raise ValueError(f"subscriptions consumer cannot apply event type {envelope.type!r}")

    async def apply_lifecycle_event(self, connection: asyncpg.Connection, envelope: Envelope, event: SubscriptionUpdated) -> None:
        fact_type = FACT_BY_EVENT[f"subscription.{event.kind}"]
        fact = fact_type(
            subscription_ref=event.subscription_ref,
            event_id=event.partner_event_id,
            occurred_at=event.occurred_at,
            user_id=event.user_id,
            plan=event.plan,
            current_period_end=event.current_period_end,
        )
        await self.store.apply_fact(connection, fact, event_id=envelope.id)

    async def record_expected_entitlement(
        self, connection: asyncpg.Connection, envelope: Envelope, event: SubscriptionChanged
    ) -> None:
        """Store the entitlement that the subscription's current state implies, for the pusher."""
        await lock(connection, event.subscription_ref)
        state = await load(connection, event.subscription_ref)
        if state is None:
            logger.error("change of an unknown subscription subscription_ref=%s event_id=%s", event.subscription_ref, envelope.id)
            raise LookupError(f"subscription {event.subscription_ref} has no stored state; the change cannot be pushed")

        # The current state, not the event's: a late event then records nothing older.
        active, until, reason = entitlement(state, datetime.now(UTC), grace_period=self.store.grace_period)
        pending = await record_entitlement(
            connection,
            subscription_ref=state.subscription_ref,
            user_id=state.user_id,
            version=state.version,
            active=active,
            until=until,
            reason=reason,
        )
        pushable = await connection.fetchval(LINK_EVENT, state.subscription_ref, envelope.id)
        if pushable:
            # NOTIFY serialises commits database-wide, so it is sent only when there is a push to make.
            await wake_pusher(connection, state.subscription_ref)
        logger.debug(
            "entitlement recorded subscription_ref=%s event_id=%s version=%d active=%s pending=%s",
            state.subscription_ref, envelope.id, state.version, active, pending,
        )


def build(settings: Settings) -> Apply:
    return SubscriptionsConsumer(settings).apply


run_background = run_pusher
