"""Simulated REDETV!PLUS traffic: valid, signed, and about the same subscriptions as the NIX traffic."""

import asyncio
import json
import logging
import random
from collections import Counter
from itertools import islice

import asyncpg
import pytest
import uvicorn

from festival.services import free_port
from festival.settings import Settings
from gateway.app import create_app
from producers.simulator import build_traffic, run_simulator
from producers.traffic import Delivery
from schemas.redetv import RedetvWebhook
from tests.helpers import wait_until

COUNT = 1500


def _deliveries(seed: int = 7) -> list[Delivery]:
    return list(islice(build_traffic(random.Random(seed), {"nix", "redetv"}), COUNT))


def _redetv(deliveries: list[Delivery]) -> list[tuple[Delivery, RedetvWebhook]]:
    return [(item, RedetvWebhook.model_validate_json(item.body)) for item in deliveries if item.partner == "redetv"]


def _nix_refs(deliveries: list[Delivery]) -> set[str]:
    refs = set()
    for item in deliveries:
        if item.partner == "nix" and item.path == "/webhooks/nix":
            refs.add(json.loads(item.body)["data"]["subscription_ref"])
    return refs


def test_redetv_events_valid() -> None:
    events = _redetv(_deliveries())

    kinds = Counter(webhook.event for _, webhook in events)
    assert set(kinds) >= {"subscription.created", "subscription.renewed", "subscription.cancelled"}
    assert all(webhook.user is not None for _, webhook in events)


def test_refs_match_nix_traffic() -> None:
    deliveries = _deliveries()
    created = {webhook.subscription.id for _, webhook in _redetv(deliveries) if webhook.event == "subscription.created" and webhook.subscription}
    nix = _nix_refs(deliveries)

    # Most subscriptions NIX charged have been announced by REDETV!PLUS within the same stream.
    assert len(nix & created) >= 0.8 * len(nix)


def test_renewed_before_created_present() -> None:
    seen_created: set[str] = set()
    renewed_first = 0
    for _, webhook in _redetv(_deliveries()):
        ref = webhook.subscription.id if webhook.subscription else ""
        if webhook.event == "subscription.created":
            seen_created.add(ref)
        elif webhook.event == "subscription.renewed" and ref not in seen_created:
            renewed_first += 1

    assert renewed_first > 0


def test_same_event_sent_twice() -> None:
    events = _redetv(_deliveries())
    first_sends = [webhook.event_id for item, webhook in events if not item.redelivery]

    repeated = [event_id for event_id, count in Counter(first_sends).items() if count > 1]
    assert repeated


async def test_gateway_accepts_simulated_traffic(settings: Settings, pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="producers.simulator")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve(), name="gateway-under-simulation")

    async def started() -> bool:
        return server.started

    try:
        await wait_until(started)
        code = await run_simulator(settings, f"http://127.0.0.1:{port}", rate=500.0, count=150, seed=5)
    finally:
        server.should_exit = True
        await task

    summary = [record.getMessage() for record in caplog.records if record.getMessage().startswith("simulator stopped")]
    redetv = await pool.fetchval("SELECT count(*) FROM inbox WHERE partner = 'redetv'")
    assert code == 0
    assert "rejected=0 failed=0 unreachable=0" in summary[0]
    assert redetv > 0
