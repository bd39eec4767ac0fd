"""Scheduler job: move subscriptions whose paid period (or grace period) ended to past due or expired.

The stored status only moves when a fact arrives, so this job supplies one: a `PeriodEndChecked`
fact for each subscription whose `access_until` has passed. The state machine decides the new
status and `SubscriptionStore` stores it and publishes `SubscriptionChanged` through the outbox.

Safe in several schedulers at once: each subscription is taken with `FOR UPDATE SKIP LOCKED` in
its own short transaction, and one that a consumer is changing right now is skipped and found
again on the next run.
"""

import logging

import asyncpg
from uuid6 import uuid7

from consumers.subscription_store import SubscriptionStore, try_lock
from festival.domain.subscriptions import PeriodEndChecked
from festival.settings import Settings
from producers.scheduler import Job

logger = logging.getLogger(__name__)

SOURCE = "/producers/expiry"
INTERVAL_SECONDS = 30.0
# Subscriptions handled per run; the rest wait for the next run.
BATCH_SIZE = 500

SELECT_DUE = """
SELECT ref FROM subscriptions
WHERE status IN ('active', 'past_due', 'cancelled') AND access_until <= now()
ORDER BY access_until
LIMIT 1
FOR UPDATE SKIP LOCKED
"""
SELECT_DUE_EXCEPT = SELECT_DUE.replace("AND access_until <= now()", "AND access_until <= now() AND NOT (ref = ANY($1::text[]))")


async def check_period_ends(pool: asyncpg.Pool, settings: Settings, *, limit: int = BATCH_SIZE) -> int:
    """Apply a period-end check to each subscription whose access ended; return how many changed."""
    store = SubscriptionStore.from_settings(settings, source=SOURCE)
    changed = 0
    skipped: list[str] = []

    for _ in range(limit):
        async with pool.acquire() as connection, connection.transaction():
            ref = await (connection.fetchval(SELECT_DUE_EXCEPT, skipped) if skipped else connection.fetchval(SELECT_DUE))
            if ref is None:
                break

            # A consumer takes the subscription lock first and the row lock second. This job already
            # has the row lock, so waiting here could deadlock: a busy subscription is skipped instead.
            if not await try_lock(connection, ref):
                skipped.append(ref)
                continue

            event_id = uuid7()
            # The database clock, which also decided that the access ended.
            checked_at = await connection.fetchval("SELECT now()")
            fact = PeriodEndChecked(subscription_ref=ref, event_id=str(event_id), occurred_at=checked_at)
            decision = await store.apply_fact(connection, fact, event_id=event_id)

        if decision.changed:
            changed += 1
            logger.info(
                "period end checked subscription_ref=%s from_status=%s to_status=%s",
                ref, decision.previous_status, decision.state.status if decision.state else None,
            )
    return changed


JOBS = [Job("subscription_expiry", check_period_ends, INTERVAL_SECONDS)]
