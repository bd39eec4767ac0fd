"""Platform metrics: webhooks, events, latency, outbox gauges, dead letters and the /metrics page."""

from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from broker.envelope import Envelope
from consumers.delivery import DeliveryHandler, DeliveryPolicy, Outcome
from festival.outbox import Outbox
from festival.settings import Settings
from festival.telemetry_metrics import OutboxSampler, outbox_sampler, topic_attribute
from tests.gateway_support import encode, gateway_client, nix_event, post_signed, signed_headers
from tests.helpers import wait_until
from tests.pipeline import all_applied, confirmed, enqueue, running_consumer, running_relay
from tests.telemetry_capture import Capture, install


@pytest.fixture
def capture() -> Iterator[Capture]:
    yield install()


def _sum(capture: Capture, name: str, **attributes: Any) -> float:
    """Return the sum (counters) or count (histograms) of the points of `name` matching `attributes`."""
    total = 0.0
    for point in capture.metric_points(name):
        if all(point.attributes.get(key) == value for key, value in attributes.items()):
            total += point.count if hasattr(point, "bucket_counts") else point.value
    return total


def _gauge(capture: Capture, name: str) -> float | None:
    points = capture.metric_points(name)
    return points[-1].value if points else None


async def test_webhooks_counted_by_outcome(capture: Capture, settings: Settings) -> None:
    before = {
        outcome: _sum(capture, "festival.webhooks", **{"festival.partner": "nix", "festival.outcome": outcome})
        for outcome in ("accepted", "duplicate", "rejected")
    }
    rejected_before = _sum(capture, "festival.webhooks", **{"festival.reason": "invalid_signature"})
    body = encode(nix_event("charge.paid"))
    headers = signed_headers(body, webhook_id="msg_counted")

    async with gateway_client(settings) as client:
        accepted = await client.post("/webhooks/nix", content=body, headers=headers)
        duplicate = await client.post("/webhooks/nix", content=body, headers=headers)
        rejected = await client.post("/webhooks/nix", content=body, headers={**headers, "webhook-signature": "v1,AAAA"})

    assert (accepted.status_code, duplicate.status_code, rejected.status_code) == (202, 200, 401)
    assert _sum(capture, "festival.webhooks", **{"festival.partner": "nix", "festival.outcome": "accepted"}) == before["accepted"] + 1
    assert _sum(capture, "festival.webhooks", **{"festival.partner": "nix", "festival.outcome": "duplicate"}) == before["duplicate"] + 1
    assert _sum(capture, "festival.webhooks", **{"festival.partner": "nix", "festival.outcome": "rejected"}) == before["rejected"] + 1
    assert _sum(capture, "festival.webhooks", **{"festival.reason": "invalid_signature"}) == rejected_before + 1


async def test_unknown_webhook_path_bounded(capture: Capture, settings: Settings) -> None:
    before = _sum(capture, "festival.webhooks", **{"festival.partner": "unknown"})

    async with gateway_client(settings) as client:
        response = await client.post("/webhooks/whatever-1234", content=b"{}")

    assert response.status_code == 404
    assert _sum(capture, "festival.webhooks", **{"festival.partner": "unknown"}) == before + 1


async def test_events_published_and_applied(capture: Capture, settings: Settings, pool: asyncpg.Pool) -> None:
    labels = {"festival.consumer": "payments", "festival.topic": "payments/confirmed"}
    published_before = _sum(capture, "festival.events.published", **{"festival.topic": "payments/confirmed"})
    applied_before = _sum(capture, "festival.events.applied", **labels)
    latency_before = _sum(capture, "festival.event.latency", **labels)
    await enqueue(pool, settings, confirmed("sub-1"), confirmed("sub-2"))

    async with running_consumer("payments", settings, pool), running_relay(settings, pool):
        await wait_until(lambda: all_applied(pool, "payments"))

    assert _sum(capture, "festival.events.published", **{"festival.topic": "payments/confirmed"}) >= published_before + 2
    assert _sum(capture, "festival.events.applied", **labels) == applied_before + 2
    assert _sum(capture, "festival.event.latency", **labels) == latency_before + 2


async def test_outbox_gauges_report_backlog(capture: Capture, settings: Settings, pool: asyncpg.Pool) -> None:
    await enqueue(pool, settings, confirmed("sub-1"), confirmed("sub-2"), confirmed("sub-3"))

    sample = await outbox_sampler.sample(pool)

    assert sample.backlog == 3
    assert sample.oldest_age_seconds >= 0
    assert _gauge(capture, "festival.outbox.backlog") == 3
    assert _gauge(capture, "festival.outbox.oldest_age") == sample.oldest_age_seconds


async def test_outbox_gauges_empty(settings: Settings, pool: asyncpg.Pool) -> None:
    sample = await OutboxSampler().sample(pool)

    assert sample.backlog == 0
    assert sample.oldest_age_seconds == 0.0


async def test_stale_sample_not_reported(pool: asyncpg.Pool) -> None:
    sampler = OutboxSampler(stale_after=0.0)
    await sampler.sample(pool)

    assert list(sampler.observe_backlog(None)) == []  # type: ignore[arg-type]


async def test_dead_letter_counted(capture: Capture, settings: Settings, pool: asyncpg.Pool) -> None:
    labels = {"festival.consumer": "payments", "festival.topic": "payments/confirmed"}
    before = _sum(capture, "festival.dead_letters", **labels)
    await enqueue(pool, settings, confirmed("sub-1"))
    stored = await pool.fetchval("SELECT envelope FROM outbox")
    envelope = Envelope.model_validate(stored)

    async def fail(connection: asyncpg.Connection, envelope: Envelope) -> None:
        raise RuntimeError("apply failed on purpose")

    handler = DeliveryHandler("payments", fail, pool, Outbox.from_settings(settings), DeliveryPolicy(1, 1.0))
    outcome = await handler.handle(envelope.to_json(), f"{settings.topic_root}/payments/confirmed")

    assert outcome is Outcome.DEAD
    assert _sum(capture, "festival.dead_letters", **labels) == before + 1


async def test_metrics_page_prometheus(capture: Capture, settings: Settings) -> None:
    async with gateway_client(settings) as client:
        await post_signed(client, "/webhooks/nix", encode(nix_event("charge.paid")))
        response = await client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "festival_webhooks" in response.text
    assert 'festival_partner="nix"' in response.text


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("festival/v1/payments/confirmed", "payments/confirmed"),
        ("festival/v1/draws/0195-abc/live", "draws/{draw_id}/live"),
        ("festival/v1/draws/current", "draws/current"),
        ("other/tree/topic", "other/tree/topic"),
    ],
)
def test_topic_attribute(topic: str, expected: str) -> None:
    assert topic_attribute(topic, "festival/v1") == expected


def test_sse_screens_counted(capture: Capture) -> None:
    from gateway.live_events import StreamSlots

    slots = StreamSlots(limit=5)
    before = _sse_screens(capture)
    slots.acquire()
    slots.acquire()
    slots.release()

    assert _sse_screens(capture) - before == 1


def _sse_screens(capture: Capture) -> int:
    points = [point for point in capture.metric_points("festival.screen.connections") if point.attributes.get("festival.transport") == "sse"]
    return int(sum(point.value for point in points))
