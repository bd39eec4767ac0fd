"""From signed partner webhooks to an active subscription and a published event, through real services."""

import asyncio
import json
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from broker import topics
from broker.connection import aiomqtt_client
from festival.services import Mosquitto
from festival.settings import Settings
from tests.gateway_support import gateway_client, nix_event, signed_headers
from tests.helpers import wait_until
from tests.pipeline import all_applied, create_open_draw, create_subscriptions, relay_task, running_consumer
from tests.subscription_flow_support import redetv_event


async def _post(client, body: dict, path: str = "/webhooks/nix") -> int:  # type: ignore[no-untyped-def]
    raw = json.dumps(body).encode()
    response = await client.post(path, content=raw, headers=signed_headers(raw))
    return int(response.status_code)


@pytest.mark.parametrize("mqtt_version", ["5", "3.1.1"])
async def test_webhook_activates_subscription(settings: Settings, pool: asyncpg.Pool, mqtt_version: str) -> None:
    settings = settings.model_copy(update={"mqtt_version": mqtt_version})
    async with pool.acquire() as connection:
        await create_open_draw(connection)
    changed_topic = topics.absolute(settings.topic_root, topics.SUBSCRIPTIONS_CHANGED)

    async with aiomqtt_client(settings) as observer:
        await observer.subscribe(changed_topic, qos=1)
        async with (
            gateway_client(settings) as client,
            relay_task(settings),
            running_consumer("payments", settings, pool),
            running_consumer("subscriptions", settings, pool),
        ):
            created = redetv_event("subscription.created", at=datetime.now(UTC) - timedelta(minutes=1), ref="sub_e2e")
            created_status = await _post(client, created, "/webhooks/redetv")
            paid = nix_event("charge.paid", charge_id="ch_e2e", subscription_ref="sub_e2e", paid_at=datetime.now(UTC).isoformat())
            status = await _post(client, paid)
            await wait_until(lambda: _status_is(pool, "sub_e2e", "active"), timeout=15)
            async with asyncio.timeout(15):
                message = await _last_changed(observer)

    envelope = json.loads(message.payload)
    subscription = await pool.fetchrow("SELECT status, current_period_end FROM subscriptions WHERE ref = 'sub_e2e'")
    numbers = await pool.fetchval("SELECT count(*) FROM lucky_numbers WHERE charge_id = 'ch_e2e'")
    assert created_status == 202
    assert status == 202
    assert envelope["type"] == "festival.subscription.changed.v1"
    assert envelope["data"]["subscription_ref"] == "sub_e2e"
    assert subscription["status"] == "active"
    assert subscription["current_period_end"] is not None
    assert numbers == 2


async def _status_is(pool: asyncpg.Pool, ref: str, status: str) -> bool:
    return await pool.fetchval("SELECT status FROM subscriptions WHERE ref = $1", ref) == status


async def _last_changed(observer):  # type: ignore[no-untyped-def]
    """Return the first `subscriptions/changed` message whose status is active."""
    async for message in observer.messages:
        if json.loads(message.payload)["data"]["status"] == "active":
            return message
    raise AssertionError("the observer's connection closed")


async def test_public_event_has_no_personal_data(settings: Settings, pool: asyncpg.Pool) -> None:
    await create_subscriptions(pool, settings, "sub_pii")
    changed_topic = topics.absolute(settings.topic_root, "#")
    payloads: list[bytes] = []

    async with aiomqtt_client(settings) as observer:
        await observer.subscribe(changed_topic, qos=1)
        async with gateway_client(settings) as client, relay_task(settings), running_consumer("payments", settings, pool):
            await _post(client, nix_event("charge.paid", charge_id="ch_pii", subscription_ref="sub_pii"))
            async with asyncio.timeout(15):
                async for message in observer.messages:
                    payloads.append(bytes(message.payload))
                    if len(payloads) == 2:
                        break

    joined = b"\n".join(payloads).decode()
    for personal in ("Conceição", "Araújo", "conceicao@example.com", "123.456.789-09", "12345678909", "987654321"):
        assert personal not in joined, personal


@pytest.mark.timeout(150)
async def test_broker_outage_during_webhooks(settings: Settings, pool: asyncpg.Pool, mosquitto: Mosquitto) -> None:
    async with pool.acquire() as connection:
        await create_open_draw(connection)
    await create_subscriptions(pool, settings, *[f"sub_{index}" for index in range(20)])

    async with gateway_client(settings) as client, relay_task(settings), running_consumer("payments", settings, pool):
        before = [await _post(client, nix_event("charge.paid", charge_id=f"ch_a{index}", subscription_ref=f"sub_{index}")) for index in range(20)]

        mosquitto.stop()
        try:
            during = [await _post(client, nix_event("charge.paid", charge_id=f"ch_b{index}", subscription_ref=f"sub_{index}")) for index in range(20)]
        finally:
            mosquitto.start()

        after = [await _post(client, nix_event("charge.paid", charge_id=f"ch_c{index}", subscription_ref=f"sub_{index}")) for index in range(20)]
        await wait_until(lambda: _payments_are(pool, 60), timeout=120)

    assert set(before + during + after) == {202}
    assert await all_applied(pool, "payments")
    assert await pool.fetchval("SELECT count(*) FROM lucky_number_grants") == 60


async def _payments_are(pool: asyncpg.Pool, expected: int) -> bool:
    return await pool.fetchval("SELECT count(*) FROM payments") == expected
