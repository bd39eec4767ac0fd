"""W3C trace context on MQTT messages, and the messaging spans around publishing and processing.

The context of the code that creates an event (the webhook request, or the consumer run that
caused it) is its creation context. It travels inside the envelope as the CloudEvents
`traceparent`/`tracestate` extension, which survives every MQTT version, and on MQTT 5 also as
user properties. Nothing on the way changes it, as the OpenTelemetry messaging conventions ask of
a creation context set by the application. The relay's PRODUCER span and each consumer's
CONSUMER span are children of that context and link to it, so one webhook gives one trace.

A missing or malformed `traceparent` starts a new trace; it never fails a message.
Span attributes carry ids only (event, topic, consumer), never the event's data.
"""

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from broker.envelope import Envelope

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
TRACE_FIELDS = (TRACEPARENT, TRACESTATE)

# Attribute names of the OpenTelemetry semantic conventions (messaging and CloudEvents).
MESSAGING_SYSTEM = "messaging.system"
MESSAGING_OPERATION_TYPE = "messaging.operation.type"
MESSAGING_OPERATION_NAME = "messaging.operation.name"
MESSAGING_DESTINATION_NAME = "messaging.destination.name"
MESSAGING_DESTINATION_TEMPLATE = "messaging.destination.template"
MESSAGING_CONSUMER_GROUP_NAME = "messaging.consumer.group.name"
MESSAGING_MESSAGE_ID = "messaging.message.id"
MESSAGING_MESSAGE_BODY_SIZE = "messaging.message.body.size"
CLOUDEVENTS_EVENT_ID = "cloudevents.event_id"
CLOUDEVENTS_EVENT_TYPE = "cloudevents.event_type"
CLOUDEVENTS_EVENT_SUBJECT = "cloudevents.event_subject"
ERROR_TYPE = "error.type"
# Attributes of this platform.
FESTIVAL_REDELIVERY = "festival.redelivery"
FESTIVAL_DELIVERY_OUTCOME = "festival.delivery.outcome"
FESTIVAL_TRACE_CONTEXT = "festival.trace_context"

MQTT = "mqtt"

_propagator = TraceContextTextMapPropagator()
_tracer = trace.get_tracer("festival.broker")


def current_trace_fields() -> dict[str, str]:
    """Return `traceparent` (and `tracestate`) of the current span, or {} outside a recorded trace.

    The result fills an envelope's `traceparent` and `tracestate`, so an event created inside a
    span carries that span's context as its creation context.
    """
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier


def user_properties(fields: Mapping[str, str]) -> list[tuple[str, str]]:
    """Return the MQTT 5 user properties that carry `fields` (`traceparent`, `tracestate`)."""
    return [(name, fields[name]) for name in TRACE_FIELDS if fields.get(name)]


def creation_context(
    envelope_fields: Mapping[str, Any], properties: Mapping[str, Any] | None = None
) -> otel_context.Context | None:
    """Extract the creation context from an envelope's fields, else from MQTT 5 user properties.

    Returns None when neither contains a valid `traceparent`, and the caller then starts a new trace.
    """
    for carrier in (envelope_fields, properties or {}):
        traceparent = carrier.get(TRACEPARENT)
        if not isinstance(traceparent, str):
            continue
        fields = {TRACEPARENT: traceparent}
        tracestate = carrier.get(TRACESTATE)
        if isinstance(tracestate, str):
            fields[TRACESTATE] = tracestate

        extracted = _propagator.extract(fields, context=otel_context.Context())
        if trace.get_current_span(extracted).get_span_context().is_valid:
            return extracted
    return None


def _links(parent: otel_context.Context | None) -> list[Link]:
    if parent is None:
        return []
    return [Link(trace.get_current_span(parent).get_span_context())]


def _malformed(carrier: Mapping[str, Any], parent: otel_context.Context | None) -> bool:
    return parent is None and carrier.get(TRACEPARENT) is not None


@dataclass
class Publication:
    """The span around one publish, and the trace fields that a message published in it carries."""

    span: Span
    trace_fields: dict[str, str] = field(default_factory=dict)

    @property
    def user_properties(self) -> list[tuple[str, str]]:
        return user_properties(self.trace_fields)


@contextlib.contextmanager
def publish_span(
    destination: str,
    *,
    message_id: str,
    template: str | None = None,
    creation: Mapping[str, Any] | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[Publication]:
    """Open a PRODUCER span `publish {template or destination}` around publishing one message.

    With `creation` (the trace fields already in the message, as the relay has them) the span
    is a child of that creation context and links to it, and the message keeps those fields.
    Without it (a live draw step, published by the consumer that runs the draw) the span is a
    child of the current span and becomes the message's creation context. The caller then puts
    `publication.trace_fields` into the envelope and, on MQTT 5, `publication.user_properties`
    into the PUBLISH properties.
    """
    parent = creation_context(creation) if creation is not None else None
    # A message whose creation context is missing or malformed starts a new trace.
    start_context = parent if creation is None or parent is not None else otel_context.Context()
    span_attributes: dict[str, Any] = {
        MESSAGING_SYSTEM: MQTT,
        MESSAGING_OPERATION_TYPE: "publish",
        MESSAGING_OPERATION_NAME: "publish",
        MESSAGING_DESTINATION_NAME: destination,
        MESSAGING_MESSAGE_ID: message_id,
    }
    if template:
        span_attributes[MESSAGING_DESTINATION_TEMPLATE] = template
    if creation is not None and _malformed(creation, parent):
        span_attributes[FESTIVAL_TRACE_CONTEXT] = "invalid"
    span_attributes.update(attributes or {})

    with _tracer.start_as_current_span(
        f"publish {template or destination}",
        context=start_context,
        kind=SpanKind.PRODUCER,
        attributes=span_attributes,
        links=_links(parent),
        record_exception=False,
        set_status_on_exception=False,
    ) as span, _errors_recorded(span):
        if creation is not None:
            fields = {name: str(creation[name]) for name in TRACE_FIELDS if creation.get(name)}
        else:
            fields = current_trace_fields()
        yield Publication(span, fields)


@contextlib.contextmanager
def process_span(
    envelope: Envelope,
    destination: str,
    *,
    consumer: str,
    template: str | None = None,
    properties: Mapping[str, Any] | None = None,
    body_size: int | None = None,
) -> Iterator[Span]:
    """Open a CONSUMER span `process {template or destination}` around applying one event.

    The span is a child of the event's creation context (from the envelope, else from MQTT 5
    user properties) and links to it. Without a valid context it is the root of a new trace.
    """
    fields = {name: getattr(envelope, name) for name in TRACE_FIELDS}
    parent = creation_context(fields, properties)
    attributes: dict[str, Any] = {
        MESSAGING_SYSTEM: MQTT,
        MESSAGING_OPERATION_TYPE: "process",
        MESSAGING_OPERATION_NAME: "process",
        MESSAGING_DESTINATION_NAME: destination,
        MESSAGING_CONSUMER_GROUP_NAME: consumer,
        MESSAGING_MESSAGE_ID: str(envelope.id),
        CLOUDEVENTS_EVENT_ID: str(envelope.id),
        CLOUDEVENTS_EVENT_TYPE: envelope.type,
        CLOUDEVENTS_EVENT_SUBJECT: envelope.subject,
    }
    if template:
        attributes[MESSAGING_DESTINATION_TEMPLATE] = template
    if body_size is not None:
        attributes[MESSAGING_MESSAGE_BODY_SIZE] = body_size
    if _malformed(fields, parent) or (parent is None and (properties or {}).get(TRACEPARENT) is not None):
        attributes[FESTIVAL_TRACE_CONTEXT] = "invalid"

    with _tracer.start_as_current_span(
        f"process {template or destination}",
        context=parent if parent is not None else otel_context.Context(),
        kind=SpanKind.CONSUMER,
        attributes=attributes,
        links=_links(parent),
        record_exception=False,
        set_status_on_exception=False,
    ) as span, _errors_recorded(span):
        yield span


def record_outcome(span: Span, outcome: str, *, failed: bool = False) -> None:
    """Set the delivery outcome on a process span; mark the span as an error when `failed`.

    `record_error` sets `error.type` where the handler caught the exception.
    """
    span.set_attribute(FESTIVAL_DELIVERY_OUTCOME, outcome)
    if failed:
        span.set_status(Status(StatusCode.ERROR, outcome))


def record_error(span: Span, error_type: str) -> None:
    """Mark `span` as failed with `error_type`, a class name or outcome and never a message.

    Exception messages may quote the data that failed (an SQL error can name a row's values),
    so they stay out of spans. The component's logs contain the details.
    """
    span.set_status(Status(StatusCode.ERROR, error_type))
    span.set_attribute(ERROR_TYPE, error_type)


@contextlib.contextmanager
def _errors_recorded(span: Span) -> Iterator[None]:
    try:
        yield
    except Exception as error:
        record_error(span, type(error).__qualname__)
        raise

