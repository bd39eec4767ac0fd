"""OpenTelemetry setup of one component: tracer and meter providers, exporters, instrumentation.

Configured by the standard variables, read once at start:

- `OTEL_SDK_DISABLED=true` turns everything off.
- `OTEL_TRACES_EXPORTER`: `otlp`, `console` or `none` (comma-separated for several).
- `OTEL_METRICS_EXPORTER`: `otlp`, `console`, `prometheus` or `none`. `prometheus` serves the
  text format on the gateway's `/metrics` and, where `FESTIVAL_METRICS_PORT` is set, on that
  port in the other components.
- `OTEL_EXPORTER_OTLP_ENDPOINT` (and the per-signal `..._TRACES_ENDPOINT`,
  `..._METRICS_ENDPOINT`), `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`;
  only the `http/protobuf` protocol is installed.
- `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`, `OTEL_BSP_*` and
  `OTEL_METRIC_EXPORT_INTERVAL`, read by the SDK itself.

Unlike the SDK's defaults, a signal whose exporter variable is unset is off unless an OTLP
endpoint is set, so `festival up` exports nothing unless asked.

A collector that is down never slows the platform: spans are queued in a bounded
BatchSpanProcessor and exported from its own thread, and `Telemetry.shutdown` returns within
`SHUTDOWN_SECONDS` however the export goes.
"""

import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from festival.span_redaction import RedactingSpanProcessor

logger = logging.getLogger(__name__)

# Seconds one OTLP export may take, retries included, unless OTEL_EXPORTER_OTLP_TIMEOUT sets another value.
EXPORT_TIMEOUT_SECONDS = 3.0
# Seconds `Telemetry.shutdown` waits for the last export before it drops what is left.
SHUTDOWN_SECONDS = 4.0

TRACE_EXPORTERS = {"otlp", "console", "none"}
METRIC_EXPORTERS = {"otlp", "console", "prometheus", "none"}
SUPPORTED_PROTOCOL = "http/protobuf"


class TelemetryConfigError(Exception):
    """An `OTEL_*` variable holds a value this platform cannot use."""


@dataclass
class Telemetry:
    """The providers of one process and what they export to; `shutdown` stops them within a bound."""

    service_name: str
    tracer_provider: TracerProvider | None = None
    meter_provider: MeterProvider | None = None
    span_exporters: list[SpanExporter] = field(default_factory=list)
    prometheus: bool = False

    @property
    def enabled(self) -> bool:
        return self.tracer_provider is not None or self.meter_provider is not None

    def shutdown(self, timeout: float = SHUTDOWN_SECONDS) -> bool:
        """Flush and stop the providers; return False when `timeout` passed and telemetry was dropped."""
        if not self.enabled:
            return True

        worker = threading.Thread(target=self._shutdown_providers, args=(timeout,), name="telemetry-shutdown", daemon=True)
        worker.start()
        worker.join(timeout)
        if not worker.is_alive():
            logger.info("telemetry stopped service=%s", self.service_name)
            return True

        # The exporters' own shutdown interrupts an export that is still retrying.
        for exporter in self.span_exporters:
            exporter.shutdown()
        worker.join(0.5)
        logger.warning("telemetry shutdown timed out service=%s timeout=%.1fs; unsent telemetry dropped", self.service_name, timeout)
        return False

    def _shutdown_providers(self, timeout: float) -> None:
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()
        if self.meter_provider is not None:
            self.meter_provider.shutdown(timeout_millis=timeout * 1000)


def _exporter_names(environ: Mapping[str, str], variable: str, allowed: set[str], *, otlp_endpoint: bool) -> list[str]:
    raw = environ.get(variable, "").strip()
    if not raw:
        return ["otlp"] if otlp_endpoint else []

    names = [name.strip().lower() for name in raw.split(",") if name.strip()]
    unknown = [name for name in names if name not in allowed]
    if unknown:
        raise TelemetryConfigError(
            f"{variable}={raw!r} is not supported: use a comma-separated list of {', '.join(sorted(allowed))}"
        )
    return [name for name in names if name != "none"]


def _check_protocol(environ: Mapping[str, str], signal: str) -> None:
    for variable in (f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        protocol = environ.get(variable, "").strip()
        if protocol and protocol != SUPPORTED_PROTOCOL:
            raise TelemetryConfigError(f"{variable}={protocol!r} is not supported: use {SUPPORTED_PROTOCOL}")
        if protocol:
            return


def _otlp_timeout(environ: Mapping[str, str], signal: str) -> float | None:
    """Return the default export timeout, or None to let the exporter read the variables."""
    if environ.get(f"OTEL_EXPORTER_OTLP_{signal}_TIMEOUT") or environ.get("OTEL_EXPORTER_OTLP_TIMEOUT"):
        return None
    return EXPORT_TIMEOUT_SECONDS


def _has_endpoint(environ: Mapping[str, str], signal: str) -> bool:
    return bool(environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT"))


def _span_exporter(name: str, environ: Mapping[str, str]) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()

    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    _check_protocol(environ, "TRACES")
    return OTLPSpanExporter(timeout=_otlp_timeout(environ, "TRACES"))


def _metric_reader(name: str, environ: Mapping[str, str]) -> MetricReader:
    if name == "console":
        return PeriodicExportingMetricReader(ConsoleMetricExporter())
    if name == "prometheus":
        from opentelemetry.exporter.prometheus import PrometheusMetricReader

        return PrometheusMetricReader()

    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    _check_protocol(environ, "METRICS")
    return PeriodicExportingMetricReader(OTLPMetricExporter(timeout=_otlp_timeout(environ, "METRICS")))


def _disabled(environ: Mapping[str, str]) -> bool:
    return environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def build(
    service_name: str,
    *,
    environ: Mapping[str, str] | None = None,
    span_processors: Sequence[SpanProcessor] = (),
    metric_readers: Sequence[MetricReader] = (),
    prometheus: bool = False,
) -> Telemetry:
    """Build the providers that the `OTEL_*` variables ask for, plus the given processors and readers.

    Nothing global changes here; `configure` installs the result. `prometheus` adds the
    Prometheus reader even when `OTEL_METRICS_EXPORTER` does not name it.
    """
    environ = os.environ if environ is None else environ
    if _disabled(environ):
        return Telemetry(service_name)

    resource = Resource.create({SERVICE_NAME: environ.get("OTEL_SERVICE_NAME") or service_name})
    traces = _exporter_names(environ, "OTEL_TRACES_EXPORTER", TRACE_EXPORTERS, otlp_endpoint=_has_endpoint(environ, "TRACES"))
    metric_names = _exporter_names(
        environ, "OTEL_METRICS_EXPORTER", METRIC_EXPORTERS, otlp_endpoint=_has_endpoint(environ, "METRICS")
    )
    if prometheus and "prometheus" not in metric_names:
        metric_names.append("prometheus")

    telemetry = Telemetry(resource.attributes[SERVICE_NAME], prometheus="prometheus" in metric_names)  # type: ignore[arg-type]
    if traces or span_processors:
        telemetry.tracer_provider = TracerProvider(resource=resource)
        for name in traces:
            exporter = _span_exporter(name, environ)
            telemetry.span_exporters.append(exporter)
            # Bounded queue (OTEL_BSP_MAX_QUEUE_SIZE, 2048 by default): when the collector is
            # down, spans beyond it are dropped instead of slowing the caller.
            telemetry.tracer_provider.add_span_processor(RedactingSpanProcessor(BatchSpanProcessor(exporter)))
        for processor in span_processors:
            telemetry.tracer_provider.add_span_processor(RedactingSpanProcessor(processor))

    readers = [_metric_reader(name, environ) for name in metric_names] + list(metric_readers)
    if readers:
        telemetry.meter_provider = MeterProvider(resource=resource, metric_readers=readers)
    return telemetry


_installed: Telemetry | None = None


def installed() -> Telemetry | None:
    """Return the telemetry that `configure` installed in this process, if any."""
    return _installed


def configure(service_name: str, **options: object) -> Telemetry:
    """Build the providers (see `build`), install them globally and instrument asyncpg and httpx.

    OpenTelemetry accepts one global provider per process, so a second call returns the first
    result unchanged.
    """
    global _installed
    if _installed is not None:
        return _installed

    telemetry = build(service_name, **options)  # type: ignore[arg-type]
    if telemetry.tracer_provider is not None:
        trace.set_tracer_provider(telemetry.tracer_provider)
        _instrument_clients()
    if telemetry.meter_provider is not None:
        metrics.set_meter_provider(telemetry.meter_provider)

    _installed = telemetry
    logger.info(
        "telemetry configured service=%s traces=%s metrics=%s prometheus=%s",
        telemetry.service_name,
        telemetry.tracer_provider is not None,
        telemetry.meter_provider is not None,
        telemetry.prometheus,
    )
    return telemetry


def _instrument_clients() -> None:
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    # Parameters stay out of spans: they may hold personal data. Only the SQL text is recorded.
    AsyncPGInstrumentor(capture_parameters=False).instrument()  # type: ignore[no-untyped-call]
    HTTPXClientInstrumentor().instrument()


@contextmanager
def configured(service_name: str, *, metrics_host: str = "127.0.0.1", metrics_port: int | None = None) -> Iterator[Telemetry]:
    """Configure telemetry for the block, serve Prometheus on `metrics_port` if set, and shut down after.

    The port serves the text format at any path, `/metrics` included. With `OTEL_SDK_DISABLED`
    it still answers, with the process metrics only, so health checks that probe it keep working.
    """
    telemetry = configure(service_name, prometheus=metrics_port is not None)
    server = None
    if metrics_port is not None:
        import prometheus_client

        server, _ = prometheus_client.start_http_server(metrics_port, addr=metrics_host)
        logger.info("metrics endpoint started address=%s:%d", metrics_host, metrics_port)
    try:
        yield telemetry
    finally:
        if server is not None:
            server.shutdown()
            logger.info("metrics endpoint stopped address=%s:%d", metrics_host, metrics_port)
        telemetry.shutdown()


@contextmanager
def suppressed() -> Iterator[None]:
    """Keep instrumented clients (asyncpg, httpx) from recording spans inside the block.

    Background polling (the relay's outbox reads, the samplers) would otherwise start a new
    trace every poll.
    """
    from opentelemetry.instrumentation.utils import suppress_instrumentation

    with suppress_instrumentation():
        yield
