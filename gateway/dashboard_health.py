"""The OK/attention status of each dashboard tile, from the figures and fixed thresholds.

The thresholds travel with the figures in the JSON, so the page states the same values it is judged by.
"""

from datetime import timedelta
from typing import Literal

from pydantic import BaseModel

from gateway.dashboard_queries import Figures

Status = Literal["ok", "attention"]

# The relay wakes on every outbox insert and polls each `relay_poll_seconds` (1 s by default), so
# an event unpublished for 10 s means the relay is down or cannot reach the broker.
OUTBOX_OLDEST_SECONDS = 10.0
# Targets of the platform for webhook to applied at 500 webhooks/s.
LATENCY_P50_MS = 10.0
LATENCY_P99_MS = 50.0
# The entitlement pusher retries every 5 s, so a change not sent to REDETV!PLUS after a minute is stuck.
ENTITLEMENT_PUSH_OLDEST_SECONDS = 60.0
# A draw still not completed this long after its scheduled time has stalled.
DRAW_OVERDUE_SECONDS = 600.0


class Thresholds(BaseModel):
    outbox_oldest_seconds: float
    delivery_oldest_seconds: float
    """The relay publishes an event again to a consumer that has not applied it by this age."""
    latency_p50_ms: float
    latency_p99_ms: float
    entitlement_push_oldest_seconds: float
    draw_overdue_seconds: float


class Health(BaseModel):
    webhooks: Status
    """Attention when a partner sent webhooks in the last hour but none in the last 5 minutes."""
    outbox: Status
    deliveries: Status
    dead_letters: Status
    latency: Status
    subscriptions: Status
    lucky_numbers: Status
    draws: Status


def thresholds_for(redelivery_after_seconds: float) -> Thresholds:
    return Thresholds(
        outbox_oldest_seconds=OUTBOX_OLDEST_SECONDS,
        delivery_oldest_seconds=redelivery_after_seconds,
        latency_p50_ms=LATENCY_P50_MS,
        latency_p99_ms=LATENCY_P99_MS,
        entitlement_push_oldest_seconds=ENTITLEMENT_PUSH_OLDEST_SECONDS,
        draw_overdue_seconds=DRAW_OVERDUE_SECONDS,
    )


def assess(figures: Figures, thresholds: Thresholds) -> Health:
    """Judge each tile. A figure with no data, such as no latency sample or no pending row, counts as OK.

    The exception is the draws tile, which needs attention when no draw is scheduled or under way.
    """
    subscriptions = figures.subscriptions
    return Health(
        webhooks=_status(any(item.last_hour > 0 and item.last_5_minutes == 0 for item in figures.webhooks)),
        outbox=_status(_older(figures.outbox.oldest_unpublished_seconds, thresholds.outbox_oldest_seconds)),
        deliveries=_status(
            any(_older(item.oldest_pending_seconds, thresholds.delivery_oldest_seconds) for item in figures.deliveries)
        ),
        dead_letters=_status(any(item.open > 0 for item in figures.dead_letters)),
        latency=_status(
            _above(figures.latency.p50_ms, thresholds.latency_p50_ms)
            or _above(figures.latency.p99_ms, thresholds.latency_p99_ms)
        ),
        subscriptions=_status(
            subscriptions.illegal_transitions_open > 0
            or _older(subscriptions.oldest_entitlement_push_seconds, thresholds.entitlement_push_oldest_seconds)
        ),
        lucky_numbers=_status(figures.lucky_numbers.grants_waiting > 0),
        draws=_status(_draws_need_attention(figures, thresholds)),
    )


def _draws_need_attention(figures: Figures, thresholds: Thresholds) -> bool:
    draw = figures.next_draw
    if draw is None:
        return True

    overdue_after = draw.scheduled_at + timedelta(seconds=thresholds.draw_overdue_seconds)
    return figures.generated_at > overdue_after


def _older(age_seconds: float | None, limit_seconds: float) -> bool:
    return age_seconds is not None and age_seconds > limit_seconds


def _above(value: float | None, limit: float) -> bool:
    return value is not None and value > limit


def _status(attention: bool) -> Status:
    return "attention" if attention else "ok"
