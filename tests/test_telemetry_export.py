"""Telemetry configuration from OTEL_* variables, and a collector that is down.

No collector runs in these tests: the OTLP exporter points at a loopback port with nothing
listening, and neither requests nor shutdown may wait for it beyond their bound.
"""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import ConsoleSpanExporter

from festival.services import free_port
from festival.settings import Settings
from festival.telemetry import SHUTDOWN_SECONDS, TelemetryConfigError, build
from tests.helpers import wait_until


@pytest.fixture
def closed_endpoint() -> str:
    """Return an OTLP endpoint on loopback where nothing listens (connections are refused)."""
    return f"http://127.0.0.1:{free_port()}"


def test_default_is_off() -> None:
    telemetry = build("festival-test", environ={})

    assert not telemetry.enabled


def test_sdk_disabled_wins() -> None:
    telemetry = build("festival-test", environ={"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "console"})

    assert not telemetry.enabled


def test_console_when_asked() -> None:
    telemetry = build("festival-test", environ={"OTEL_TRACES_EXPORTER": "console", "OTEL_METRICS_EXPORTER": "none"})

    assert [type(exporter) for exporter in telemetry.span_exporters] == [ConsoleSpanExporter]
    assert telemetry.meter_provider is None
    assert telemetry.shutdown()


def test_endpoint_enables_otlp(closed_endpoint: str) -> None:
    telemetry = build("festival-test", environ={"OTEL_EXPORTER_OTLP_ENDPOINT": closed_endpoint})

    assert [type(exporter) for exporter in telemetry.span_exporters] == [OTLPSpanExporter]
    assert telemetry.meter_provider is not None
    assert telemetry.shutdown()


def test_service_name_from_environment() -> None:
    telemetry = build("festival-test", environ={"OTEL_SERVICE_NAME": "gateway-eu", "OTEL_TRACES_EXPORTER": "console"})

    assert telemetry.service_name == "gateway-eu"
    assert telemetry.shutdown()


def test_unknown_exporter_named() -> None:
    with pytest.raises(TelemetryConfigError, match="OTEL_TRACES_EXPORTER"):
        build("festival-test", environ={"OTEL_TRACES_EXPORTER": "zipkin"})


def test_grpc_protocol_named(closed_endpoint: str) -> None:
    environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": closed_endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}

    with pytest.raises(TelemetryConfigError, match="OTEL_EXPORTER_OTLP_PROTOCOL"):
        build("festival-test", environ=environ)


@pytest.fixture
def busy_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    # The batch processor reads these from the process environment: export every 20 ms.
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "20")
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "2048")


def test_closed_collector_spans_fast(closed_endpoint: str, busy_batches: None) -> None:
    telemetry = build("festival-test", environ={"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": closed_endpoint})
    assert telemetry.tracer_provider is not None
    tracer = telemetry.tracer_provider.get_tracer("tests")

    started = time.monotonic()
    # More spans than the queue holds: the extra ones are dropped, never waited for.
    for number in range(5000):
        with tracer.start_as_current_span(f"request {number}"):
            pass
    elapsed = time.monotonic() - started

    telemetry.shutdown()
    assert elapsed < 2.0


def test_closed_collector_shutdown_bounded(closed_endpoint: str, busy_batches: None) -> None:
    telemetry = build("festival-test", environ={"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": closed_endpoint})
    assert telemetry.tracer_provider is not None
    tracer = telemetry.tracer_provider.get_tracer("tests")
    for number in range(3000):
        with tracer.start_as_current_span(f"request {number}"):
            pass

    started = time.monotonic()
    telemetry.shutdown()
    elapsed = time.monotonic() - started

    assert elapsed < SHUTDOWN_SECONDS + 1.0


@pytest.fixture
def gateway_process(settings: Settings, closed_endpoint: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """Run `festival gateway` exporting traces and metrics to a collector that is down."""
    port = free_port()
    env = {
        **os.environ,
        "FESTIVAL_DATABASE_URL": settings.require_database_url(),
        "FESTIVAL_HTTP_PORT": str(port),
        "FESTIVAL_LOG_LEVEL": "WARNING",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "otlp,prometheus",
        "OTEL_EXPORTER_OTLP_ENDPOINT": closed_endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "20",
        "OTEL_METRIC_EXPORT_INTERVAL": "100",
    }
    process = subprocess.Popen([sys.executable, "-m", "festival.cli", "gateway"], env=env)
    try:
        yield process, f"http://127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


async def test_gateway_closed_collector(gateway_process: tuple[subprocess.Popen[bytes], str]) -> None:
    process, url = gateway_process
    async with httpx.AsyncClient(base_url=url, timeout=5.0) as client:

        async def ready() -> bool:
            try:
                return (await client.get("/healthz")).status_code == 200
            except httpx.TransportError:
                return False

        await wait_until(ready, timeout=30)

        durations = []
        for _ in range(40):
            started = time.monotonic()
            # Unsigned, so answered 401 without touching the database, yet traced and counted.
            response = await client.post("/webhooks/nix", content=b"{}", headers={"content-type": "application/json"})
            durations.append(time.monotonic() - started)
            assert response.status_code == 401
        metrics_page = await client.get("/metrics")

    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    process.wait(SHUTDOWN_SECONDS + 10)
    stopped_in = time.monotonic() - started

    assert max(durations) < 0.5
    assert "festival_webhooks" in metrics_page.text
    assert process.returncode == 0
    assert stopped_in < SHUTDOWN_SECONDS + 3.0
