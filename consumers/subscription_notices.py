"""Subscriber notifications that a subscription change writes, in the transaction of the change.

The texts are in `festival.notifications`; the subscriptions consumer dispatches them.
`SubscriptionStore` writes the notices returned here together with the change;
`notify_prize_won` is for the draws consumer, which records the winners.
"""

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

import asyncpg

from festival import notifications
from festival.domain.subscriptions import (
    ChargeFailed,
    ChargePaid,
    Decision,
    Fact,
    SubscriptionCancelled,
    SubscriptionState,
)

logger = logging.getLogger(__name__)

# Wakes the subscriptions consumer's pusher once the transaction that wrote work for it commits.
WORK_CHANNEL = "festival_subscription_work"


def format_lucky_number(number: int) -> str:
    """Return a lucky number as printed for subscribers: at least five digits, zero-padded."""
    return f"{number:05d}"


async def _enqueue(connection: asyncpg.Connection, ref: str, kind: notifications.NotificationKind, body: str) -> None:
    notification_id = await notifications.enqueue(connection, ref, kind, body)
    # The subscriptions consumer dispatches notifications; wake it when this transaction commits.
    await connection.execute("SELECT pg_notify($1, $2)", WORK_CHANNEL, ref)
    logger.debug("notification queued id=%s subscription_ref=%s kind=%s", notification_id, ref, kind)


Notice = tuple[notifications.NotificationKind, str]


def transition_notice(decision: Decision, state: SubscriptionState, fact: Fact, grace_period: timedelta) -> Notice | None:
    """Return the message that an applied fact means for the subscriber, if any, as (kind, body)."""
    if isinstance(fact, ChargePaid):
        if state.current_period_end is not None:
            return "payment_confirmed", notifications.payment_confirmed(fact.amount, state.current_period_end)
        return None

    if isinstance(fact, ChargeFailed):
        # A failed charge of a subscriber who still has access is a renewal that failed.
        if state.access and state.current_period_end is not None and state.status in ("active", "past_due"):
            grace_until = max(state.current_period_end + grace_period, state.until)
            return "renewal_failed", notifications.renewal_failed(grace_until)
        return None

    if decision.status_changed and state.status == "past_due":
        return "renewal_failed", notifications.renewal_failed(state.until)

    if isinstance(fact, SubscriptionCancelled) and decision.status_changed:
        access_until = state.until if state.access else None
        return "cancelled", notifications.cancelled(access_until)
    return None


def lucky_numbers_notice(numbers: Sequence[int], draw_title: str, draw_scheduled_at: datetime) -> Notice:
    """Return the message that lists the lucky numbers a payment earned in a draw."""
    body = notifications.lucky_numbers_issued([format_lucky_number(n) for n in numbers], draw_title, draw_scheduled_at)
    return "lucky_numbers_issued", body


async def notify_prize_won(
    connection: asyncpg.Connection, subscription_ref: str, *, draw_title: str, number: int, prize: str
) -> None:
    """Queue the message to a winner; call inside the transaction that records the winner."""
    body = notifications.prize_won(draw_title, format_lucky_number(number), prize)
    await _enqueue(connection, subscription_ref, "prize_won", body)
