"""The subscription lifecycle end to end: partner webhooks through the gateway, relay and both
consumers, against real PostgreSQL and Mosquitto and a fake REDETV!PLUS API on 127.0.0.1."""

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from dateutil.relativedelta import relativedelta

from festival.settings import Settings
from tests.conftest import OPERATOR_TOKEN
from tests.fake_redetv_plus import SlowRedetvPlus, serve_fake_redetv
from tests.helpers import wait_until
from tests.pipeline import create_open_draw
from tests.subscription_flow_support import (
    REF,
    USER,
    history_facts,
    notification_kinds,
    paid,
    post,
    redetv_event,
    refunded,
    running_platform,
    settled,
    with_redetv_api,
)

NOW = datetime.now(UTC).replace(microsecond=0)


async def _status(pool: asyncpg.Pool, ref: str = REF) -> str | None:
    status: str | None = await pool.fetchval("SELECT status FROM subscriptions WHERE ref = $1", ref)
    return status


async def test_renewed_before_created(settings: Settings, pool: asyncpg.Pool) -> None:
    async with running_platform(settings, pool, ("payments", "subscriptions")) as client:
        await post(client, "/webhooks/redetv", redetv_event("subscription.renewed", at=NOW - timedelta(hours=1)))
        await post(client, "/webhooks/redetv", redetv_event("subscription.created", at=NOW - timedelta(hours=3)))
        await post(client, "/webhooks/nix", paid("ch_1", at=NOW - timedelta(hours=2)))
        await wait_until(lambda: settled(pool))

    row = await pool.fetchrow("SELECT status, user_id, version FROM subscriptions WHERE ref = $1", REF)
    illegal = await pool.fetchval("SELECT count(*) FROM illegal_transitions")
    assert row["status"] == "active"
    assert row["user_id"] == USER
    assert row["version"] == 3
    assert illegal == 0
    assert sorted(await history_facts(pool)) == ["created", "payment_confirmed", "renewed"]


async def test_cancelled_twice(settings: Settings, pool: asyncpg.Pool) -> None:
    cancelled = redetv_event("subscription.cancelled", at=NOW - timedelta(minutes=10), event_id="rtv_cancel_1")

    later = redetv_event("subscription.cancelled", at=NOW - timedelta(minutes=5), event_id="rtv_cancel_2")
    steps = [
        redetv_event("subscription.created", at=NOW - timedelta(hours=2)),
        paid("ch_1", at=NOW - timedelta(hours=1)),
        cancelled,
        # The same event again under a new webhook-id, then a later cancellation of the same subscription.
        cancelled,
        later,
    ]

    async with running_platform(settings, pool) as client:
        codes = []
        for body in steps:
            codes.append(await post(client, "/webhooks/nix" if "type" in body else "/webhooks/redetv", body))
            await wait_until(lambda: settled(pool))

    row = await pool.fetchrow("SELECT status, access, access_until FROM subscriptions WHERE ref = $1", REF)
    facts = await history_facts(pool)
    assert codes == [202, 202, 202, 200, 202]
    assert row["status"] == "cancelled"
    assert row["access"] is True
    assert row["access_until"] == NOW - timedelta(hours=1) + relativedelta(months=1)
    assert facts.count("cancelled") == 1
    assert (await notification_kinds(pool)).count("cancelled") == 1


async def test_payment_before_created(settings: Settings, pool: asyncpg.Pool) -> None:
    async with pool.acquire() as connection:
        await create_open_draw(connection)

    async with running_platform(settings, pool) as client:
        await post(client, "/webhooks/nix", paid("ch_early", at=NOW - timedelta(minutes=30)))
        await wait_until(lambda: _held_count(pool, 1))
        numbers_while_held = await pool.fetchval("SELECT count(*) FROM lucky_numbers")
        status_while_held = await _status(pool)

        await post(client, "/webhooks/redetv", redetv_event("subscription.created", at=NOW - timedelta(hours=1)))
        await wait_until(lambda: settled(pool))
        # The subscriptions consumer dispatches them with the default sender, which logs them.
        await wait_until(lambda: _all_notifications_sent(pool))

    numbers = await pool.fetchval("SELECT count(*) FROM lucky_numbers WHERE charge_id = 'ch_early'")
    assert numbers_while_held == 0
    assert status_while_held is None
    assert await _status(pool) == "active"
    assert numbers == 2
    assert await _held_count(pool, 0)
    assert await notification_kinds(pool) == ["payment_confirmed", "lucky_numbers_issued"]


async def _all_notifications_sent(pool: asyncpg.Pool) -> bool:
    unsent = await pool.fetchval("SELECT count(*) FROM notifications WHERE sent_at IS NULL")
    return bool(unsent == 0)


async def _held_count(pool: asyncpg.Pool, expected: int) -> bool:
    return await pool.fetchval("SELECT count(*) FROM held_payments") == expected


async def test_refund_after_renewal(settings: Settings, pool: asyncpg.Pool) -> None:
    first_paid = NOW - timedelta(days=20)
    async with pool.acquire() as connection:
        await create_open_draw(connection)

    async with running_platform(settings, pool) as client:
        await post(client, "/webhooks/redetv", redetv_event("subscription.created", at=first_paid - timedelta(minutes=5)))
        await post(client, "/webhooks/nix", paid("ch_1", at=first_paid))
        await post(client, "/webhooks/redetv", redetv_event("subscription.renewed", at=NOW - timedelta(hours=2)))
        await post(client, "/webhooks/nix", paid("ch_2", at=NOW - timedelta(hours=1)))
        await wait_until(lambda: settled(pool))
        renewed_end = await pool.fetchval("SELECT current_period_end FROM subscriptions WHERE ref = $1", REF)

        await post(client, "/webhooks/nix", refunded("ch_2", at=NOW - timedelta(minutes=10), amount="29.90"))
        await wait_until(lambda: _voided(pool, "ch_2", 2))
        await wait_until(lambda: settled(pool))

    row = await pool.fetchrow("SELECT status, current_period_end FROM subscriptions WHERE ref = $1", REF)
    assert renewed_end == first_paid + relativedelta(months=2)
    assert row["status"] == "active"
    assert row["current_period_end"] == first_paid + relativedelta(months=1)
    assert await _voided(pool, "ch_1", 0)
    assert (await history_facts(pool))[-1] == "payment_refunded"


async def _voided(pool: asyncpg.Pool, charge_id: str, expected: int) -> bool:
    count = await pool.fetchval(
        "SELECT count(*) FROM lucky_numbers WHERE charge_id = $1 AND voided_at IS NOT NULL", charge_id
    )
    return bool(count == expected)


@pytest.mark.timeout(90)
async def test_push_retried_then_applied(settings: Settings, pool: asyncpg.Pool) -> None:
    fake = SlowRedetvPlus(script=[(429, {"Retry-After": "1"}), (503, {}), (503, {}), (503, {})])

    async with serve_fake_redetv(fake):
        settings = with_redetv_api(settings, fake)
        async with running_platform(settings, pool, ("subscriptions",)) as client:
            await post(client, "/webhooks/redetv", redetv_event("subscription.created", at=NOW - timedelta(hours=1)))
            await wait_until(lambda: _pushed(pool), timeout=60)

    applied_at = await pool.fetchval(
        "SELECT max(applied_at) FROM deliveries WHERE consumer = 'subscriptions'"
    )
    assert len(fake.requests) == 5
    assert len(fake.successes) == 1
    assert fake.successes[0]["user_id"] == USER
    assert fake.successes[0]["body"]["active"] is False
    assert fake.arrived_at[1] - fake.arrived_at[0] >= timedelta(seconds=1)
    # The delivery committed before the first request went out: no transaction waited for REDETV!PLUS.
    assert applied_at <= fake.arrived_at[0]


async def _pushed(pool: asyncpg.Pool, ref: str = REF) -> bool:
    row = await pool.fetchrow("SELECT sent_at, pending FROM entitlement_pushes WHERE subscription_ref = $1", ref)
    return row is not None and row["sent_at"] is not None and not row["pending"]


@pytest.mark.timeout(90)
async def test_push_unknown_user_dead_lettered(settings: Settings, pool: asyncpg.Pool) -> None:
    fake = SlowRedetvPlus(unknown_users={USER})

    async with serve_fake_redetv(fake):
        settings = with_redetv_api(settings, fake)
        async with running_platform(settings, pool, ("subscriptions",)) as client:
            await post(client, "/webhooks/redetv", redetv_event("subscription.created", at=NOW - timedelta(hours=1)))
            await wait_until(lambda: _dead_letters(pool, 1), timeout=30)
            dead = await pool.fetchrow("SELECT id, consumer, error FROM dead_letters")

            # The user now exists at REDETV!PLUS, so an operator replays the dead letter.
            fake.unknown_users.clear()
            response = await client.post(
                f"/v1/dead-letters/{dead['id']}/replay", headers={"authorization": f"Bearer {OPERATOR_TOKEN}"}
            )
            await wait_until(lambda: _pushed(pool), timeout=30)

    assert dead["consumer"] == "subscriptions"
    assert "404" in dead["error"]
    assert response.status_code == 200
    assert len(fake.successes) == 1


async def _dead_letters(pool: asyncpg.Pool, expected: int) -> bool:
    return await pool.fetchval("SELECT count(*) FROM dead_letters") == expected


async def test_operator_view_matches_events(settings: Settings, pool: asyncpg.Pool) -> None:
    steps = [
        ("/webhooks/redetv", redetv_event("subscription.created", at=NOW - timedelta(days=3))),
        ("/webhooks/nix", paid("ch_1", at=NOW - timedelta(days=3))),
        ("/webhooks/redetv", redetv_event("subscription.renewed", at=NOW - timedelta(days=1))),
        ("/webhooks/nix", paid("ch_2", at=NOW - timedelta(days=1))),
        ("/webhooks/redetv", redetv_event("subscription.cancelled", at=NOW - timedelta(hours=1))),
    ]

    async with running_platform(settings, pool) as client:
        for path, body in steps:
            await post(client, path, body)
            await wait_until(lambda: settled(pool))
        response = await client.get(f"/v1/subscriptions/{REF}", headers={"authorization": f"Bearer {OPERATOR_TOKEN}"})

    view = response.json()
    assert response.status_code == 200
    assert view["status"] == "cancelled"
    assert [payment["charge_id"] for payment in view["payments"]] == ["ch_1", "ch_2"]
    assert [entry["to_status"] for entry in view["history"]] == [
        "pending_payment", "active", "active", "active", "cancelled",
    ]
    assert view["current_period_end"] == (NOW - timedelta(days=3) + relativedelta(months=2)).isoformat().replace("+00:00", "Z")
