"""Redaction of personal data from the error texts of exported spans.

The platform's own spans record ids only and never an exception's text. Instrumentations do:
the ASGI server span, for one, records an unhandled exception with its message and stack, and a
database error message may quote the value it failed on. `RedactingSpanProcessor` hands its
inner processor a copy of each ended span in which exception events and the status description
pass through `redact_error_text`.
"""

import re

from opentelemetry.context import Context
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import Status

from festival.log_redaction import redact

EXCEPTION_TEXT_ATTRIBUTES = ("exception.message", "exception.stacktrace")

# asyncpg appends PostgreSQL's DETAIL line to an error's text. It can repeat a key or a whole row
# ("Failing row contains (...)"), names included, which no pattern of `redact` recognises.
_POSTGRES_DETAIL = re.compile(r"^DETAIL:  .*$", re.M)


def redact_error_text(text: str) -> str:
    """Withhold PostgreSQL's DETAIL lines in `text`, then redact CPFs, e-mail addresses and phone numbers."""
    return redact(_POSTGRES_DETAIL.sub("DETAIL:  (withheld)", text))


class RedactingSpanProcessor(SpanProcessor):
    """Span processor that passes each ended span to `inner` without personal data in its error texts."""

    def __init__(self, inner: SpanProcessor) -> None:
        self.inner = inner

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self.inner.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        self.inner.on_end(redacted_span(span))

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def redacted_span(span: ReadableSpan) -> ReadableSpan:
    """Return `span`, or a copy of it whose exception events and status description are redacted."""
    description = span.status.description
    if not description and not any(_has_exception_text(event) for event in span.events):
        return span

    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=span.attributes,
        events=[_redacted_event(event) for event in span.events],
        links=span.links,
        kind=span.kind,
        status=Status(span.status.status_code, redact_error_text(description) if description else None),
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def _has_exception_text(event: Event) -> bool:
    attributes = event.attributes or {}
    return any(key in attributes for key in EXCEPTION_TEXT_ATTRIBUTES)


def _redacted_event(event: Event) -> Event:
    attributes = dict(event.attributes or {})
    for key in EXCEPTION_TEXT_ATTRIBUTES:
        value = attributes.get(key)
        if isinstance(value, str):
            attributes[key] = redact_error_text(value)
    return Event(event.name, attributes, event.timestamp)
