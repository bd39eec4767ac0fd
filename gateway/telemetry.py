"""Telemetry of the gateway: server spans, webhook counters and the Prometheus `/metrics` page.

`fastapi_telemetry()` (FastAPI's own option) and `instrument(app)` are the gateway's hooks. They
instrument only what `festival.telemetry` configured in this process, so with telemetry off the
request path gains nothing but the `/metrics` route.
"""

import json
import logging

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from festival import telemetry
from festival.telemetry_metrics import webhooks
from gateway.problems import ProblemError
from schemas.problems import PROBLEM_MEDIA_TYPE

logger = logging.getLogger(__name__)

WEBHOOK_PREFIX = "/webhooks/"
# Probes, scrapes and the dashboard's polls every few seconds would bury the webhooks among their traces.
EXCLUDED_URLS = "/healthz,/readyz,/metrics,/painel,/v1/dashboard"
# Any other path segment is counted as `unknown`, so a scan of odd URLs cannot add series.
PARTNERS = frozenset({"nix", "redetv"})


def fastapi_telemetry() -> TelemetryConfig | None:
    """Return the `telemetry` option of the FastAPI app: FastAPI's defaults when telemetry is on, all off otherwise.

    With the defaults and no provider configured FastAPI records nothing, but it still looks up
    the global OpenTelemetry providers on every request.
    """
    installed = telemetry.installed()
    if installed is not None and installed.enabled:
        return None
    return {"tracing": False, "metrics": False, "logs": False}


def instrument(app: FastAPI) -> None:
    """Add server spans and webhook counters when telemetry is on, and the `/metrics` route always."""
    installed = telemetry.installed()
    if installed is not None and installed.tracer_provider is not None:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        # Only the server span per request: the per-message ASGI spans add nothing for webhooks.
        FastAPIInstrumentor.instrument_app(app, excluded_urls=EXCLUDED_URLS, exclude_spans=["receive", "send"])
    if installed is not None and installed.meter_provider is not None:
        app.add_middleware(WebhookMetricsMiddleware)
    app.add_api_route("/metrics", metrics_page, methods=["GET"], include_in_schema=False)


async def metrics_page(request: Request) -> Response:
    """Serve the Prometheus text format, or 404 when the Prometheus exporter is off."""
    installed = telemetry.installed()
    if installed is None or not installed.prometheus:
        raise ProblemError(
            404,
            "metrics_disabled",
            "Metrics disabled",
            "As métricas estão desligadas: defina OTEL_METRICS_EXPORTER=prometheus para publicá-las aqui.",
        )

    import prometheus_client

    return Response(prometheus_client.generate_latest(), media_type=prometheus_client.CONTENT_TYPE_LATEST)


def _partner(path: str) -> str:
    segment = path[len(WEBHOOK_PREFIX):].split("/", 1)[0]
    return segment if segment in PARTNERS else "unknown"


def _problem_code(body: bytes) -> str | None:
    try:
        code = json.loads(body).get("code")
    except (ValueError, AttributeError):
        return None
    return code if isinstance(code, str) else None


class WebhookMetricsMiddleware:
    """Count each webhook answer by partner, outcome and reason.

    The reason of a rejection is the problem's stable `code` (`invalid_signature`, ...), read
    from the answer's body; the partner is the path segment after `/webhooks/`.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(WEBHOOK_PREFIX):
            await self.app(scope, receive, send)
            return

        status = 500
        problem = False
        body = bytearray()

        async def send_observed(message: Message) -> None:
            nonlocal status, problem
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = dict(message.get("headers", ()))
                problem = headers.get(b"content-type", b"").decode("latin-1").startswith(PROBLEM_MEDIA_TYPE)
            elif message["type"] == "http.response.body" and problem and len(body) < 64 * 1024:
                body.extend(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        finally:
            webhooks.add(1, self._attributes(scope["path"], status, bytes(body) if problem else b""))

    @staticmethod
    def _attributes(path: str, status: int, problem_body: bytes) -> dict[str, str]:
        partner = _partner(path)
        if status == 202:
            return {"festival.partner": partner, "festival.outcome": "accepted", "festival.reason": "accepted"}
        if status == 200:
            return {"festival.partner": partner, "festival.outcome": "duplicate", "festival.reason": "duplicate"}
        reason = _problem_code(problem_body) or f"http_{status}"
        outcome = "error" if status >= 500 else "rejected"
        return {"festival.partner": partner, "festival.outcome": outcome, "festival.reason": reason}
