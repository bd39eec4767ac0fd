"""Exported spans keep personal data out of exception events and status descriptions."""

import asyncpg
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from festival import telemetry

PERSONAL = ("123.456.789-09", "maria@example.com", "+5511987654321")
ERROR_TEXT = "customer 123.456.789-09 maria@example.com +5511987654321 not found"


@pytest.fixture
def exported() -> InMemorySpanExporter:
    return InMemorySpanExporter()


def _finish_span(exporter: InMemorySpanExporter, *, error: bool) -> ReadableSpan:
    built = telemetry.build("festival-redaction-test", environ={}, span_processors=[SimpleSpanProcessor(exporter)])
    assert built.tracer_provider is not None
    tracer = built.tracer_provider.get_tracer(__name__)

    with tracer.start_as_current_span("work", record_exception=False, set_status_on_exception=False) as span:
        span.set_attribute("festival.event_id", "0195f3c2-7d4e-7000-8000-000000000001")
        if error:
            span.record_exception(LookupError(ERROR_TEXT))
            span.set_status(Status(StatusCode.ERROR, ERROR_TEXT))

    (finished,) = exporter.get_finished_spans()
    return finished


def test_exception_message_redacted(exported: InMemorySpanExporter) -> None:
    span = _finish_span(exported, error=True)

    (event,) = span.events
    for value in PERSONAL:
        assert value not in event.attributes["exception.message"], value
        assert value not in event.attributes["exception.stacktrace"], value
    assert event.attributes["exception.type"] == "LookupError"
    assert event.attributes["exception.message"].endswith("not found")


def test_status_description_redacted(exported: InMemorySpanExporter) -> None:
    span = _finish_span(exported, error=True)

    for value in PERSONAL:
        assert value not in (span.status.description or ""), value
    assert span.status.status_code is StatusCode.ERROR


def test_ids_kept(exported: InMemorySpanExporter) -> None:
    span = _finish_span(exported, error=True)

    assert span.attributes["festival.event_id"] == "0195f3c2-7d4e-7000-8000-000000000001"
    assert span.name == "work"
    assert span.context.trace_id != 0


def test_span_without_error_unchanged(exported: InMemorySpanExporter) -> None:
    span = _finish_span(exported, error=False)

    assert span.events == ()
    assert span.status.status_code is StatusCode.UNSET
    assert span.attributes["festival.event_id"] == "0195f3c2-7d4e-7000-8000-000000000001"


async def test_postgres_detail_withheld(exported: InMemorySpanExporter, db: asyncpg.Connection) -> None:
    name = "Conceição Araújo"
    await db.execute("CREATE TEMP TABLE people (name text UNIQUE)")
    await db.execute("INSERT INTO people VALUES ($1)", name)
    built = telemetry.build("festival-redaction-test", environ={}, span_processors=[SimpleSpanProcessor(exported)])
    assert built.tracer_provider is not None
    tracer = built.tracer_provider.get_tracer(__name__)

    # Like the asyncpg and ASGI instrumentations, the span records the exception that leaves it.
    with pytest.raises(asyncpg.UniqueViolationError) as raised, tracer.start_as_current_span("insert"):
        await db.execute("INSERT INTO people VALUES ($1)", name)

    (span,) = exported.get_finished_spans()
    (event,) = span.events
    assert name in str(raised.value)
    assert name not in event.attributes["exception.message"]
    assert name not in event.attributes["exception.stacktrace"]
    assert name not in (span.status.description or "")
    assert "DETAIL:  (withheld)" in event.attributes["exception.message"]
