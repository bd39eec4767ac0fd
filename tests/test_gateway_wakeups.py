"""Gateway ingest commits send no NOTIFY, and the relay is woken after the commit (`festival.wakeups`)."""

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest

from festival import wakeups
from festival.settings import Settings
from tests.gateway_support import TXID, gateway_client, nix_event, pix_item, signed_headers
from tests.subscription_flow_support import redetv_event

Ingest = Callable[[httpx.AsyncClient], Awaitable[int]]
MARKER = "marker"


async def _post(client: httpx.AsyncClient, path: str, body: object) -> int:
    raw = json.dumps(body, ensure_ascii=False).encode()
    response = await client.post(path, content=raw, headers=signed_headers(raw))
    return int(response.status_code)


async def _nix_batch(client: httpx.AsyncClient) -> int:
    return await _post(client, "/webhooks/nix", nix_event("charge.paid", charge_id="ch_batch"))


async def _nix_txid(client: httpx.AsyncClient) -> int:
    return await _post(client, "/webhooks/nix", nix_event("charge.paid", method="pix", pix={"txid": TXID}))


async def _pix(client: httpx.AsyncClient) -> int:
    # `charge.created` has no canonical event, so only the PIX callback writes to the outbox.
    created = await _post(client, "/webhooks/nix", nix_event("charge.created", method="pix", pix={"txid": TXID}))
    assert created == 202
    return await _post(client, "/webhooks/nix/pix", {"pix": [pix_item()]})


async def _redetv(client: httpx.AsyncClient) -> int:
    return await _post(client, "/webhooks/redetv", redetv_event("subscription.created", at=datetime(2026, 3, 1, tzinfo=UTC)))


INGESTS = pytest.mark.parametrize("ingest", [_nix_batch, _nix_txid, _pix, _redetv], ids=["batch", "txid", "pix", "redetv"])


@pytest.fixture
async def received(settings: Settings) -> AsyncIterator[list[str]]:
    """Payloads of the relay's channel, in the order of the commits that sent them."""
    payloads: list[str] = []
    listener = await asyncpg.connect(settings.require_database_url())
    await listener.add_listener(wakeups.OUTBOX_CHANNEL, lambda *args: payloads.append(args[3]))
    yield payloads
    await listener.close()


async def _arrival(received: list[str], payload: str) -> None:
    while payload not in received:
        await asyncio.sleep(0.01)


@INGESTS
async def test_ingest_commit_silent(
    settings: Settings, pool: asyncpg.Pool, received: list[str], monkeypatch: pytest.MonkeyPatch, ingest: Ingest
) -> None:
    requested: list[set[str]] = []

    async def recorded(connection: asyncpg.Connection, channels: set[str]) -> None:
        requested.append(set(channels))

    monkeypatch.setattr(wakeups, "send", recorded)
    async with gateway_client(settings) as client:
        status = await ingest(client)
    # A listener gets notifications in commit order: a NOTIFY from the ingest commit comes first.
    await pool.execute("SELECT pg_notify($1, $2)", wakeups.OUTBOX_CHANNEL, MARKER)
    await asyncio.wait_for(_arrival(received, MARKER), timeout=10)

    assert status == 202
    assert received == [MARKER]
    assert {wakeups.OUTBOX_CHANNEL} in requested
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 1


@INGESTS
async def test_ingest_wakes_relay(settings: Settings, pool: asyncpg.Pool, received: list[str], ingest: Ingest) -> None:
    async with gateway_client(settings) as client:
        status = await ingest(client)
        await asyncio.wait_for(_arrival(received, ""), timeout=10)

    assert status == 202
    assert received == [""]
