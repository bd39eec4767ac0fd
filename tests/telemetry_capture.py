"""In-memory telemetry for tests: the process's global providers, installed once per session.

OpenTelemetry accepts one global tracer and meter provider per process, so every telemetry test
shares these. Each test clears the finished spans first and filters them by trace id.
"""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from festival import telemetry


@dataclass
class Capture:
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader

    def finished(self) -> tuple[ReadableSpan, ...]:
        return self.spans.get_finished_spans()

    def metric_points(self, name: str) -> list[Any]:
        """Return the data points of metric `name` collected now."""
        data: MetricsData | None = self.metrics.get_metrics_data()
        if data is None:
            return []
        return [
            point
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == name
            for point in metric.data.data_points
        ]


_capture: Capture | None = None


def install() -> Capture:
    """Install in-memory providers (spans exported as they end) unless already installed."""
    global _capture
    if _capture is not None:
        return _capture

    spans = InMemorySpanExporter()
    reader = InMemoryMetricReader()
    installed = telemetry.configure(
        "festival-tests",
        environ={},
        span_processors=[SimpleSpanProcessor(spans)],
        metric_readers=[reader],
        prometheus=True,
    )
    assert installed.tracer_provider is not None, "another test configured telemetry first"
    _capture = Capture(spans, reader)
    return _capture


def one(spans: Iterable[ReadableSpan], *, kind: SpanKind, name_prefix: str) -> ReadableSpan:
    """Return the single span of `kind` whose name starts with `name_prefix`."""
    found = [span for span in spans if span.kind == kind and span.name.startswith(name_prefix)]
    assert len(found) == 1, f"expected one {kind.name} span {name_prefix!r}, got {[span.name for span in found]}"
    return found[0]


def of_kind(spans: Iterable[ReadableSpan], kind: SpanKind, name_prefix: str = "") -> Iterator[ReadableSpan]:
    return (span for span in spans if span.kind == kind and span.name.startswith(name_prefix))
