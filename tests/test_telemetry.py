"""Traces from a signed webhook through the relay to the consumers, on MQTT 5 and 3.1.1."""

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import aiomqtt
import asyncpg
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from broker import tracing
from broker.connection import aiomqtt_client
from broker.envelope import Envelope
from consumers.delivery import DeliveryHandler, DeliveryPolicy, Outcome
from festival.outbox import Outbox, envelope_for
from festival.settings import Settings
from schemas.events import PaymentConfirmed
from tests.gateway_support import customer, encode, gateway_client, nix_event, post_signed
from tests.helpers import wait_until
from tests.pipeline import all_applied, confirmed, create_open_draw, running_consumer, running_relay
from tests.telemetry_capture import Capture, install, of_kind, one

VERSIONS = ["5", "3.1.1"]


@pytest.fixture
def capture() -> Iterator[Capture]:
    captured = install()
    captured.spans.clear()
    yield captured
    captured.spans.clear()


@pytest.fixture(params=VERSIONS, ids=["mqtt5", "mqtt311"])
def versioned(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    return settings.model_copy(update={"mqtt_version": request.param})


async def _all_published(pool: asyncpg.Pool) -> bool:
    return await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0


async def _webhook_through_pipeline(settings: Settings, pool: asyncpg.Pool, body: dict[str, Any]) -> None:
    async with pool.acquire() as connection:
        await create_open_draw(connection)
    async with gateway_client(settings) as client:
        response = await post_signed(client, "/webhooks/nix", encode(body))
    assert response.status_code == 202

    # The consumer subscribes first, so the first publication reaches it.
    async with running_consumer("payments", settings, pool), running_relay(settings, pool):
        await wait_until(lambda: all_applied(pool, "payments"))
        await wait_until(lambda: _all_published(pool))


def _trace_of(spans: tuple[ReadableSpan, ...], root: ReadableSpan) -> list[ReadableSpan]:
    """Return the spans of `root`'s trace, without the relay's redeliveries (a slow run may add some)."""
    return [
        span
        for span in spans
        if span.context.trace_id == root.context.trace_id and not (span.attributes or {}).get("festival.redelivery")
    ]


def _parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def _linked_ids(span: ReadableSpan) -> list[int]:
    return [link.context.span_id for link in span.links]


async def test_webhook_one_trace(capture: Capture, versioned: Settings, pool: asyncpg.Pool) -> None:
    root = versioned.topic_root
    await _webhook_through_pipeline(versioned, pool, nix_event("charge.paid"))

    spans = capture.finished()
    server = one(spans, kind=SpanKind.SERVER, name_prefix="POST /webhooks/nix")
    in_trace = _trace_of(spans, server)
    publish = one(in_trace, kind=SpanKind.PRODUCER, name_prefix=f"publish {root}/payments/confirmed")
    process = one(in_trace, kind=SpanKind.CONSUMER, name_prefix=f"process {root}/payments/confirmed")
    assert _parent_id(publish) == server.context.span_id
    assert _linked_ids(publish) == [server.context.span_id]
    assert _parent_id(process) == server.context.span_id
    assert _linked_ids(process) == [server.context.span_id]


async def test_consumer_event_continues_trace(capture: Capture, versioned: Settings, pool: asyncpg.Pool) -> None:
    outbox = Outbox.from_settings(versioned)
    with trace.get_tracer("tests").start_as_current_span("request"):
        first = envelope_for(confirmed("sub-1"), source="/tests", subject="ch_1")
    async with pool.acquire() as connection:
        await outbox.enqueue(connection, "payments/confirmed", first)
    follow_ups: list[Envelope] = []

    async def publish_follow_up(connection: asyncpg.Connection, envelope: Envelope) -> None:
        follow_ups.append(await outbox.publish(connection, confirmed("sub-2"), source="/tests", subject="ch_2"))

    handler = DeliveryHandler("payments", publish_follow_up, pool, outbox, DeliveryPolicy(3, 1.0))
    outcome = await handler.handle(first.to_json(), f"{versioned.topic_root}/payments/confirmed")
    async with running_relay(versioned, pool):
        await wait_until(lambda: _all_published(pool))

    spans = capture.finished()
    process = one(spans, kind=SpanKind.CONSUMER, name_prefix="process")
    follow_up = [span for span in spans if (span.attributes or {}).get("messaging.message.id") == str(follow_ups[0].id)]
    assert outcome is Outcome.APPLIED
    assert [span.kind for span in follow_up] == [SpanKind.PRODUCER]
    assert _parent_id(follow_up[0]) == process.context.span_id
    assert follow_up[0].context.trace_id == process.context.trace_id


async def test_webhook_database_spans(capture: Capture, versioned: Settings, pool: asyncpg.Pool) -> None:
    await _webhook_through_pipeline(versioned, pool, nix_event("charge.paid"))

    spans = capture.finished()
    server = one(spans, kind=SpanKind.SERVER, name_prefix="POST /webhooks/nix")
    process = one(spans, kind=SpanKind.CONSUMER, name_prefix="process")
    queries = list(of_kind(_trace_of(spans, server), SpanKind.CLIENT))
    gateway_writes = [span for span in queries if "INSERT INTO outbox" in _statement(span) and _parent_id(span) == server.context.span_id]
    consumer_writes = [span for span in queries if _parent_id(span) == process.context.span_id]
    assert gateway_writes
    assert consumer_writes


def _statement(span: ReadableSpan) -> str:
    attributes = span.attributes or {}
    return str(attributes.get("db.statement") or attributes.get("db.query.text") or "")


async def test_consumer_span_attributes(capture: Capture, versioned: Settings, pool: asyncpg.Pool) -> None:
    await _webhook_through_pipeline(versioned, pool, nix_event("charge.paid"))

    process = one(capture.finished(), kind=SpanKind.CONSUMER, name_prefix="process")
    event_id = await pool.fetchval("SELECT event_id::text FROM outbox WHERE topic LIKE '%/payments/confirmed'")
    attributes = process.attributes or {}
    assert attributes["messaging.system"] == "mqtt"
    assert attributes["messaging.operation.type"] == "process"
    assert attributes["messaging.destination.name"] == f"{versioned.topic_root}/payments/confirmed"
    assert attributes["messaging.consumer.group.name"] == "payments"
    assert attributes["messaging.message.id"] == event_id
    assert attributes["festival.delivery.outcome"] == "applied"


async def test_relay_user_properties(capture: Capture, versioned: Settings, pool: asyncpg.Pool) -> None:
    topic = f"{versioned.topic_root}/payments/confirmed"
    with trace.get_tracer("tests").start_as_current_span("create event"):
        envelope = envelope_for(confirmed("sub-1"), source="/tests", subject="ch_1")
    async with pool.acquire() as connection:
        await Outbox.from_settings(versioned).enqueue(connection, "payments/confirmed", envelope)

    async with aiomqtt_client(versioned, identifier=f"observer-{uuid.uuid4().hex[:8]}") as observer:
        await observer.subscribe(topic, qos=1)
        async with running_relay(versioned, pool):
            message = await _next_message(observer)

    received = Envelope.from_json(bytes(message.payload))  # type: ignore[arg-type]
    properties = dict(getattr(message.properties, "UserProperty", []) or [])
    assert received.traceparent == envelope.traceparent
    if versioned.mqtt_version == "5":
        assert properties.get("traceparent") == envelope.traceparent
    else:
        assert properties == {}


async def _next_message(client: aiomqtt.Client) -> aiomqtt.Message:
    async for message in client.messages:
        return message
    raise AssertionError("the subscription ended without a message")


async def _enqueue_raw(pool: asyncpg.Pool, settings: Settings, envelope: dict[str, Any]) -> None:
    """Store an envelope exactly as given, bypassing the model, as a foreign publisher might."""
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute(
            "INSERT INTO outbox (event_id, topic, envelope) VALUES ($1, $2, $3)",
            uuid.UUID(envelope["id"]), f"{settings.topic_root}/payments/confirmed", envelope,
        )
        await connection.execute(
            "INSERT INTO deliveries (event_id, consumer, due_at) VALUES ($1, 'payments', now() + interval '1 hour')",
            uuid.UUID(envelope["id"]),
        )


@pytest.mark.parametrize(
    "traceparent",
    ["00-not-a-trace-context", "00-00000000000000000000000000000000-0000000000000000-01", 42, None],
    ids=["garbage", "all-zero", "number", "missing"],
)
async def test_bad_traceparent_new_root(
    capture: Capture, versioned: Settings, pool: asyncpg.Pool, traceparent: object
) -> None:
    envelope = Envelope(source="/tests", type=PaymentConfirmed.TYPE, subject="ch_bad", data=confirmed("sub-bad").model_dump(mode="json"))
    document = json.loads(envelope.to_json())
    if traceparent is not None:
        document["traceparent"] = traceparent
    await _enqueue_raw(pool, versioned, document)

    async with running_consumer("payments", versioned, pool), running_relay(versioned, pool):
        await wait_until(lambda: all_applied(pool, "payments"))

    spans = capture.finished()
    process = one(spans, kind=SpanKind.CONSUMER, name_prefix="process")
    publish = one(spans, kind=SpanKind.PRODUCER, name_prefix=f"publish {versioned.topic_root}/payments/confirmed")
    assert process.parent is None
    assert process.links == ()
    assert publish.parent is None
    assert (process.attributes or {})["festival.delivery.outcome"] == "applied"


async def test_malformed_traceparent_marked(capture: Capture, versioned: Settings, pool: asyncpg.Pool) -> None:
    envelope = Envelope(source="/tests", type=PaymentConfirmed.TYPE, subject="ch_bad", data=confirmed("sub-bad").model_dump(mode="json"))
    await _enqueue_raw(pool, versioned, {**json.loads(envelope.to_json()), "traceparent": "00-zz-zz-01"})

    async with running_consumer("payments", versioned, pool), running_relay(versioned, pool):
        await wait_until(lambda: all_applied(pool, "payments"))

    process = one(capture.finished(), kind=SpanKind.CONSUMER, name_prefix="process")
    assert (process.attributes or {})["festival.trace_context"] == "invalid"


# Bounded on both sides, because unbounded it also matches eleven digits inside a UUID's last group
# (`-012345678901`), which a random id has now and then.
CPF_DIGITS = re.compile(r"(?<![\w-])\d{3}\.?\d{3}\.?\d{3}-?\d{2}(?![\w-])")
EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")


def _texts(span: ReadableSpan) -> Iterator[str]:
    yield span.name
    if span.status.description:
        yield span.status.description
    for attributes in [span.attributes, *(event.attributes for event in span.events), *(link.attributes for link in span.links)]:
        for key, value in (attributes or {}).items():
            yield f"{key}={value}"


async def test_spans_hold_no_personal_data(capture: Capture, versioned: Settings, pool: asyncpg.Pool) -> None:
    person = customer()
    await _webhook_through_pipeline(versioned, pool, nix_event("charge.paid", customer=person))

    texts = [text for span in capture.finished() for text in _texts(span)]
    joined = "\n".join(texts)
    assert texts
    assert person["cpf"] not in joined
    assert person["cpf"].replace(".", "").replace("-", "") not in joined
    assert person["email"] not in joined
    assert person["phone"] not in joined
    assert person["phone"].lstrip("+") not in joined
    assert person["name"] not in joined
    assert not [text for text in texts if CPF_DIGITS.search(text)]
    assert not [text for text in texts if EMAIL.search(text)]


async def test_live_publish_span(capture: Capture) -> None:
    tracer = trace.get_tracer("tests")
    with tracer.start_as_current_span("process draws/triggered", kind=SpanKind.CONSUMER) as process:
        with tracing.publish_span(
            "festival/v1/draws/d1/live", message_id="step-1", template="festival/v1/draws/{draw_id}/live"
        ) as publication:
            fields = publication.trace_fields
            properties = publication.user_properties

    publish = one(capture.finished(), kind=SpanKind.PRODUCER, name_prefix="publish festival/v1/draws/{draw_id}/live")
    assert publish.parent is not None
    assert publish.parent.span_id == process.get_span_context().span_id
    assert fields["traceparent"].split("-")[2] == format(publish.context.span_id, "016x")
    assert properties == [("traceparent", fields["traceparent"])]
    assert (publish.attributes or {})["messaging.destination.name"] == "festival/v1/draws/d1/live"


async def test_live_publish_outside_trace(capture: Capture) -> None:
    with tracing.publish_span("festival/v1/draws/current", message_id="state-1") as publication:
        fields = publication.trace_fields

    publish = one(capture.finished(), kind=SpanKind.PRODUCER, name_prefix="publish festival/v1/draws/current")
    assert publish.parent is None
    assert fields["traceparent"].split("-")[1] == format(publish.context.trace_id, "032x")


async def test_envelope_outside_span_untraced(capture: Capture) -> None:
    envelope = envelope_for(confirmed("sub-1"), source="/tests", subject="ch_1")

    assert envelope.traceparent is None


async def test_envelope_inside_span_traced(capture: Capture) -> None:
    with trace.get_tracer("tests").start_as_current_span("request") as span:
        envelope = envelope_for(confirmed("sub-1"), source="/tests", subject="ch_1")

    context = span.get_span_context()
    assert envelope.traceparent is not None
    assert envelope.traceparent.startswith(f"00-{context.trace_id:032x}-{context.span_id:016x}-")
