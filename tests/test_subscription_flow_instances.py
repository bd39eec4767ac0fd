"""Subscription consumers as separate instances: a crash in the middle of a push, two instances
sharing the load, and two expiry jobs at once."""

import asyncio
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import asyncpg
import pytest
from dateutil.relativedelta import relativedelta

from consumers.subscription_store import SubscriptionStore
from festival.domain.subscriptions import ChargePaid
from festival.settings import Settings
from producers.expiry import check_period_ends
from tests.fake_redetv_plus import TOKEN, SlowRedetvPlus, serve_fake_redetv
from tests.gateway_support import gateway_client
from tests.helpers import wait_until
from tests.pipeline import consumer_process, create_open_draw, create_subscriptions, kill, running_relay, terminate
from tests.subscription_flow_support import REF, USER, paid, post, redetv_event, running_platform, settled, with_redetv_api

NOW = datetime.now(UTC).replace(microsecond=0)


async def _pushed(pool: asyncpg.Pool, ref: str = REF) -> bool:
    row = await pool.fetchrow("SELECT sent_at, pending FROM entitlement_pushes WHERE subscription_ref = $1", ref)
    return row is not None and row["sent_at"] is not None and not row["pending"]


@pytest.mark.timeout(120)
async def test_push_survives_consumer_kill(settings: Settings, pool: asyncpg.Pool) -> None:
    fake = SlowRedetvPlus(hang_first=True)

    async with serve_fake_redetv(fake):
        api = {"FESTIVAL_REDETV_API_URL": fake.url, "FESTIVAL_REDETV_API_TOKEN": TOKEN}
        first = consumer_process("subscriptions", settings, **api)
        try:
            async with gateway_client(settings) as client, running_relay(settings, pool):
                await post(client, "/webhooks/redetv", redetv_event("subscription.created", at=NOW - timedelta(hours=1)))
                await asyncio.wait_for(fake.hanging.wait(), timeout=60)
                kill(first)
                pushed_before_restart = await _pushed(pool)

                second = consumer_process("subscriptions", settings, **api)
                try:
                    await wait_until(lambda: _pushed(pool), timeout=60)
                finally:
                    terminate(second)
        finally:
            kill(first)

    assert pushed_before_restart is False
    assert len(fake.successes) == 1
    assert fake.successes[0]["user_id"] == USER
    assert fake.successes[0]["body"]["active"] is False


SUBSCRIBERS = 40


@pytest.mark.timeout(150)
async def test_two_instances_apply_once(settings: Settings, pool: asyncpg.Pool) -> None:
    fake = SlowRedetvPlus()
    async with pool.acquire() as connection:
        await create_open_draw(connection)
    refs = [f"sub_pair_{index}" for index in range(SUBSCRIBERS)]

    async with serve_fake_redetv(fake):
        settings = with_redetv_api(settings, fake)
        consumers = ("payments", "payments", "subscriptions", "subscriptions")
        async with running_platform(settings, pool, consumers) as client:
            for index, ref in enumerate(refs):
                created = redetv_event("subscription.created", at=NOW - timedelta(hours=2), ref=ref, user_id=f"usr_{index}")
                payment = paid(f"ch_pair_{index}", at=NOW - timedelta(hours=1), ref=ref)
                # Half of the payments arrive before their subscription.
                bodies = [payment, created] if index % 2 else [created, payment]
                for body in bodies:
                    await post(client, "/webhooks/nix" if "type" in body else "/webhooks/redetv", body)
            await wait_until(lambda: settled(pool), timeout=90)
            await wait_until(lambda: _all_pushed_active(pool), timeout=60)

    statuses = await pool.fetch("SELECT status, count(*) FROM subscriptions GROUP BY status")
    history = await pool.fetch("SELECT fact, count(*) FROM subscription_history GROUP BY fact")
    grants = await pool.fetchval("SELECT count(*) FROM lucky_number_grants")
    numbers = await pool.fetchval("SELECT count(*) FROM lucky_numbers")
    notifications = await pool.fetch("SELECT kind, count(*) FROM notifications GROUP BY kind")
    pushes = [(request["user_id"], str(request["body"])) for request in fake.successes]
    assert {row["status"]: row["count"] for row in statuses} == {"active": SUBSCRIBERS}
    assert {row["fact"]: row["count"] for row in history} == {"created": SUBSCRIBERS, "payment_confirmed": SUBSCRIBERS}
    assert grants == SUBSCRIBERS
    assert numbers == 2 * SUBSCRIBERS
    assert {row["kind"]: row["count"] for row in notifications} == {
        "payment_confirmed": SUBSCRIBERS, "lucky_numbers_issued": SUBSCRIBERS,
    }
    assert len(pushes) == len(set(pushes))


async def _all_pushed_active(pool: asyncpg.Pool) -> bool:
    done = await pool.fetchval("SELECT count(*) FROM entitlement_pushes WHERE sent_active AND NOT pending")
    return bool(done == SUBSCRIBERS)


async def test_expiry_moves_to_past_due(settings: Settings, pool: asyncpg.Pool) -> None:
    # Paid one month and one day ago: the period ended yesterday, inside the 3-day grace period.
    paid_at = NOW - relativedelta(months=1) - timedelta(days=1)
    await create_subscriptions(pool, settings, REF, at=paid_at - timedelta(minutes=5))
    store = SubscriptionStore.from_settings(settings, source="/tests")
    async with pool.acquire() as connection, connection.transaction():
        payment = ChargePaid(
            subscription_ref=REF, event_id=str(uuid4()), occurred_at=paid_at, charge_id="ch_1", amount=store.lucky_number_price
        )
        await store.apply_fact(connection, payment, event_id=uuid4())

    # Two schedulers at once.
    results = await asyncio.gather(check_period_ends(pool, settings), check_period_ends(pool, settings))

    row = await pool.fetchrow("SELECT status, access, access_until FROM subscriptions WHERE ref = $1", REF)
    published = await pool.fetchval(
        "SELECT count(*) FROM outbox WHERE topic LIKE '%/subscriptions/changed' AND envelope->'data'->>'status' = 'past_due'"
    )
    renewal_failed = await pool.fetchval("SELECT count(*) FROM notifications WHERE kind = 'renewal_failed'")
    assert sorted(results) == [0, 1]
    assert row["status"] == "past_due"
    assert row["access"] is True
    assert row["access_until"] == paid_at + relativedelta(months=1) + timedelta(days=3)
    assert published == 1
    assert renewal_failed == 1


async def test_expiry_after_grace_expires(settings: Settings, pool: asyncpg.Pool) -> None:
    paid_at = NOW - relativedelta(months=2)
    await create_subscriptions(pool, settings, REF, at=paid_at - timedelta(minutes=5))
    store = SubscriptionStore.from_settings(settings, source="/tests")
    async with pool.acquire() as connection, connection.transaction():
        payment = ChargePaid(
            subscription_ref=REF, event_id=str(uuid4()), occurred_at=paid_at, charge_id="ch_1", amount=store.lucky_number_price
        )
        await store.apply_fact(connection, payment, event_id=uuid4())

    changed = await check_period_ends(pool, settings)
    again = await check_period_ends(pool, settings)

    assert changed == 1
    assert again == 0
    assert await pool.fetchval("SELECT status FROM subscriptions WHERE ref = $1", REF) == "expired"
