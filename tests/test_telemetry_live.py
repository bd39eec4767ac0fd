"""Live draw messages join the trace of the trigger that started the draw."""

from collections.abc import Iterator

import asyncpg
import pytest
from opentelemetry.trace import SpanKind

from festival.settings import Settings
from tests.gateway_support import gateway_client
from tests.helpers import wait_until
from tests.pipeline import running_consumer, running_relay
from tests.telemetry_capture import Capture, install, of_kind, one
from tests.test_draw_flow import add_entries, create, run_to_completion


@pytest.fixture
def capture() -> Iterator[Capture]:
    captured = install()
    captured.spans.clear()
    yield captured
    captured.spans.clear()


async def test_live_publish_in_trigger_trace(capture: Capture, settings: Settings, pool: asyncpg.Pool) -> None:
    async with gateway_client(settings) as client, running_relay(settings, pool), running_consumer("draws", settings, pool):
        draw_id = await create(client)
        await add_entries(pool, draw_id, [11, 22, 33, 44])
        capture.spans.clear()
        await run_to_completion(client, draw_id)
        # The draw completes when its last step is released; the relay publishes the steps after that.
        await wait_until(lambda: _all_published(pool))

    spans = capture.finished()
    trigger = one(spans, kind=SpanKind.SERVER, name_prefix="POST /v1/draws/")
    process = one(spans, kind=SpanKind.CONSUMER, name_prefix="process")
    live = [span for span in of_kind(spans, SpanKind.PRODUCER) if span.name.endswith(f"draws/{draw_id}/live")]
    assert process.context.trace_id == trigger.context.trace_id
    assert len(live) == 8
    assert {span.context.trace_id for span in live} == {trigger.context.trace_id}


async def _all_published(pool: asyncpg.Pool) -> bool:
    return await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0
