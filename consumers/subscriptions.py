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
from consumers.entitlements import record_entitlement_of_event
from consumers.subscription_pusher import run_pusher
from consumers.subscription_store import SubscriptionStore, event_lock_key, lock_and_load
from festival.domain.subscriptions import entitlement
from festival.settings import Settings
from schemas.events import SubscriptionChanged, SubscriptionUpdated
from schemas.redetv import FACT_BY_EVENT

logger = logging.getLogger(__name__)

NAME = "subscriptions"
SOURCE = "/consumers/subscriptions"


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
        state = await lock_and_load(connection, event.subscription_ref)
        if state is None:
            logger.error("change of an unknown subscription subscription_ref=%s event_id=%s", event.subscription_ref, envelope.id)
            raise LookupError(f"subscription {event.subscription_ref} has no stored state; the change cannot be pushed")

        # The current state, not the event's: a late event then records nothing older.
        active, until, reason = entitlement(state, datetime.now(UTC), grace_period=self.store.grace_period)
        pending, pushable = await record_entitlement_of_event(
            connection,
            subscription_ref=state.subscription_ref,
            user_id=state.user_id,
            version=state.version,
            active=active,
            until=until,
            reason=reason,
            event_id=envelope.id,
        )
        logger.debug(
            "entitlement recorded subscription_ref=%s event_id=%s version=%d active=%s pending=%s pushable=%s",
            state.subscription_ref, envelope.id, state.version, active, pending, pushable,
        )


# Events of one subscription take its lock, so a batch of deliveries takes them all first.
lock_key = event_lock_key
# Every write path here requests its wakeups through `festival.wakeups`.
NOTIFY_AFTER_COMMIT = True


def build(settings: Settings) -> Apply:
    return SubscriptionsConsumer(settings).apply


run_background = run_pusher
