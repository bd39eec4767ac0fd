"""The topic tree and which consumers must apply each internal topic.

Names here are relative to the root, `festival/v1` by default. `FESTIVAL_TOPIC_ROOT` sets another
root, which the tests use to give every test its own tree.
"""

DEFAULT_ROOT = "festival/v1"

PAYMENTS_CONFIRMED = "payments/confirmed"
PAYMENTS_FAILED = "payments/failed"
PAYMENTS_REFUNDED = "payments/refunded"
SUBSCRIPTIONS_CHANGED = "subscriptions/changed"
# REDETV!PLUS lifecycle events (created, renewed, ...), translated by the gateway.
SUBSCRIPTIONS_UPDATED = "subscriptions/updated"
DRAWS_TRIGGERED = "draws/triggered"
DRAWS_CURRENT = "draws/current"


def draw_live(draw_id: str) -> str:
    return f"draws/{draw_id}/live"


def draw_state(draw_id: str) -> str:
    return f"draws/{draw_id}/state"


def dead_letters(consumer: str) -> str:
    return f"dead-letters/{consumer}"


# One delivery row per consumer listed here is created when an event enters the outbox.
# Topics absent from this table (live draw steps, dead letters) are published without tracking.
CONSUMERS_BY_TOPIC: dict[str, tuple[str, ...]] = {
    PAYMENTS_CONFIRMED: ("payments",),
    PAYMENTS_FAILED: ("payments",),
    PAYMENTS_REFUNDED: ("payments",),
    SUBSCRIPTIONS_UPDATED: ("subscriptions",),
    SUBSCRIPTIONS_CHANGED: ("subscriptions",),
    DRAWS_TRIGGERED: ("draws",),
}


def topics_of(consumer: str) -> list[str]:
    """Return the relative topics whose events `consumer` must apply."""
    return [topic for topic, consumers in CONSUMERS_BY_TOPIC.items() if consumer in consumers]


def absolute(root: str, relative: str) -> str:
    return f"{root}/{relative}"


def relative_to(root: str, topic: str) -> str:
    """Return `topic` without the `root/` prefix; raise ValueError for a topic outside the tree."""
    prefix = f"{root}/"
    if not topic.startswith(prefix):
        raise ValueError(f"topic {topic!r} is outside the tree {root!r}")
    return topic.removeprefix(prefix)


def shared(consumer: str, topic: str) -> str:
    """Return the shared-subscription filter through which instances of `consumer` split `topic`."""
    return f"$share/{consumer}/{topic}"
