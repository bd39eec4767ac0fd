"""Group commit of NIX events: many concurrent deliveries recorded together, each exactly once."""

import asyncio
import json

import asyncpg
import pytest

from festival.settings import Settings
from tests.gateway_support import gateway_client, nix_event, signed_headers


async def _post(client, body: dict, webhook_id: str | None = None) -> int:  # type: ignore[no-untyped-def]
    raw = json.dumps(body).encode()
    response = await client.post("/webhooks/nix", content=raw, headers=signed_headers(raw, webhook_id=webhook_id))
    return int(response.status_code)


async def test_concurrent_events_one_subscription(settings: Settings, pool: asyncpg.Pool) -> None:
    bodies = [nix_event("charge.paid", charge_id=f"ch_batch_{index}", subscription_ref="sub_batch") for index in range(60)]

    async with gateway_client(settings) as client:
        statuses = await asyncio.gather(*(_post(client, body) for body in bodies))

    assert set(statuses) == {202}
    assert await pool.fetchval("SELECT count(*) FROM inbox") == 60
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 60
    assert await pool.fetchval("SELECT count(*) FROM deliveries") == 60
    assert await pool.fetchval("SELECT count(*) FROM customers WHERE subscription_ref = 'sub_batch'") == 1
    assert await pool.fetchval("SELECT count(*) FROM charges") == 60


async def test_batch_mixes_new_and_repeated(settings: Settings, pool: asyncpg.Pool) -> None:
    repeated = nix_event("charge.paid", charge_id="ch_repeat")
    fresh = [nix_event("charge.failed", charge_id=f"ch_fail_{index}") for index in range(20)]

    async with gateway_client(settings) as client:
        first = await _post(client, repeated, webhook_id="msg_repeat")
        statuses = await asyncio.gather(
            *(_post(client, body) for body in fresh),
            *(_post(client, repeated, webhook_id="msg_repeat") for _ in range(5)),
        )

    assert first == 202
    assert statuses[:20] == [202] * 20
    assert statuses[20:] == [200] * 5
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 21


async def test_batch_error_records_one_by_one(
    settings: Settings, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.nix_batch import NixBatchWriter

    async def rejected(self: NixBatchWriter, connection: asyncpg.Connection, items: list[object]) -> set[str]:
        raise asyncpg.DataError("value rejected by PostgreSQL")

    monkeypatch.setattr(NixBatchWriter, "_record", rejected)
    bodies = [nix_event("charge.paid", charge_id=f"ch_single_{index}") for index in range(5)]

    async with gateway_client(settings) as client:
        statuses = await asyncio.gather(*(_post(client, body) for body in bodies))

    assert statuses == [202] * 5
    assert await pool.fetchval("SELECT count(*) FROM inbox") == 5
