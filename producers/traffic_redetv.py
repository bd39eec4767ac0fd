"""Simulated REDETV!PLUS webhooks: subscriptions created, renewed, suspended, reactivated and cancelled.

Flows pick their people from the `SubscriberPool` that the NIX generator also uses, so both partners'
events name the same subscription refs. A subscriber whom NIX charged before REDETV!PLUS announced
the subscription is announced first, which gives the platform payments that arrive before
`subscription.created`. Some flows also send `renewed` before `created`, or the same event again
under a new `webhook-id`, as partners do.
"""

import random
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from dateutil.relativedelta import relativedelta

from producers.traffic import Delivery, Subscriber, SubscriberPool, delivery, random_code

# Brazil has had no daylight saving time since 2019, so São Paulo time is a fixed offset.
BRASILIA = timezone(timedelta(hours=-3))

REDETV_PATH = "/webhooks/redetv"

# The partner's own status word after each event; the platform derives its own status.
PARTNER_STATUS = {
    "subscription.created": "active",
    "subscription.renewed": "active",
    "subscription.suspended": "suspended",
    "subscription.reactivated": "active",
    "subscription.cancelled": "cancelled",
}


class RedetvTraffic:
    """Generator of REDETV!PLUS flows over the shared `SubscriberPool`."""

    partner = "redetv"

    def __init__(
        self,
        rng: random.Random,
        pool: SubscriberPool,
        *,
        renew_rate: float = 0.3,
        cancel_rate: float = 0.1,
        suspend_rate: float = 0.05,
        renewed_first_rate: float = 0.1,
        resend_rate: float = 0.05,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.rng = rng
        self.pool = pool
        self.renew_rate = renew_rate
        self.cancel_rate = cancel_rate
        self.suspend_rate = suspend_rate
        self.renewed_first_rate = renewed_first_rate
        self.resend_rate = resend_rate
        self._now = clock or (lambda: datetime.now(timezone.utc))
        # Subscriptions announced with `created`, and those cancelled since (they get no more events).
        self.announced: set[str] = set()
        self.cancelled: set[str] = set()

    def next_flow(self) -> list[Delivery]:
        """Return a new subscription's flow, or a later event of one announced before."""
        waiting = [s for s in self.pool.subscribers if s.subscription_ref not in self.announced]
        live = [s for s in self.pool.subscribers if s.subscription_ref in self.announced - self.cancelled]
        if waiting or not live or self.rng.random() < 0.5:
            subscriber = self.rng.choice(waiting) if waiting else self.pool.new()
            flow = self.new_subscription_flow(subscriber)
        else:
            flow = self.later_flow(self.rng.choice(live))

        if flow and self.rng.random() < self.resend_rate:
            # The same event again under a new webhook-id: the inbox recognises it by `event_id`.
            original = self.rng.choice(flow)
            flow.append(Delivery(original.partner, original.path, f"msg_{random_code(self.rng, 24)}", original.event_type, original.body))
        return flow

    def new_subscription_flow(self, subscriber: Subscriber) -> list[Delivery]:
        """Return `created`, sometimes with a `renewed` that overtakes it, or a `cancelled` after it."""
        self.announced.add(subscriber.subscription_ref)
        created_at = self._now() - timedelta(seconds=self.rng.randint(0, 120))
        flow = [self._event("subscription.created", subscriber, created_at)]

        if self.rng.random() < self.renewed_first_rate:
            # The renewal a period later is delivered before the creation it follows.
            flow.insert(0, self._event("subscription.renewed", subscriber, created_at + timedelta(seconds=30)))
        elif self.rng.random() < self.cancel_rate:
            flow.append(self._cancelled(subscriber, created_at + timedelta(seconds=self.rng.randint(5, 60))))
        return flow

    def later_flow(self, subscriber: Subscriber) -> list[Delivery]:
        """Return a renewal, a suspension and reactivation, or a cancellation of an announced subscription."""
        now = self._now()
        roll = self.rng.random()
        if roll < self.cancel_rate:
            return [self._cancelled(subscriber, now)]
        if roll < self.cancel_rate + self.suspend_rate:
            return [
                self._event("subscription.suspended", subscriber, now),
                self._event("subscription.reactivated", subscriber, now + timedelta(seconds=self.rng.randint(5, 60))),
            ]
        return [self._event("subscription.renewed", subscriber, now)]

    def _cancelled(self, subscriber: Subscriber, at: datetime) -> Delivery:
        self.cancelled.add(subscriber.subscription_ref)
        return self._event("subscription.cancelled", subscriber, at)

    def _event(self, event_type: str, subscriber: Subscriber, at: datetime) -> Delivery:
        months = 12 if subscriber.plan == "anual" else 1
        payload: dict[str, Any] = {
            "event_id": f"rtv_{random_code(self.rng, 20)}",
            "event": event_type,
            "occurred_at": at.astimezone(BRASILIA).isoformat(timespec="seconds"),
            "subscription": {
                "id": subscriber.subscription_ref,
                "user_id": subscriber.user_id,
                "plan": subscriber.plan,
                "status": PARTNER_STATUS[event_type],
                "current_period_end": (at + relativedelta(months=months)).astimezone(BRASILIA).isoformat(timespec="seconds"),
            },
            "user": {"id": subscriber.user_id, **subscriber.customer()},
        }
        return delivery(self.partner, REDETV_PATH, event_type, payload)
