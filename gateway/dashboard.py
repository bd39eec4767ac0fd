"""The operator dashboard: the page at `/painel` and the figures it polls from `/v1/dashboard`.

The page itself is public and contains no data. It prompts the operator for a token, keeps it in
the tab's sessionStorage and sends it as a bearer token to `/v1/dashboard`, which requires an
operator token like the rest of the operator API.
"""

import logging
from itertools import chain
from pathlib import Path

import asyncpg
from fastapi import APIRouter, Depends, Request
from starlette.responses import FileResponse, HTMLResponse, Response

from broker.topics import CONSUMERS_BY_TOPIC
from festival import telemetry
from gateway.auth import require_operator
from gateway.dashboard_health import Health, Thresholds, assess, thresholds_for
from gateway.dashboard_queries import Figures, read_figures
from gateway.problems import PROBLEM_RESPONSES, ProblemError

logger = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parent
STATIC_DIR = PACKAGE_DIR / "static"
TEMPLATE = PACKAGE_DIR / "templates" / "dashboard.html"
STATIC_FILES = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}
# The page's scripts change with the code, so browsers revalidate them on every load.
NO_CACHE = {"Cache-Control": "no-cache"}

# A query that takes longer than this is cancelled, so a page that polls every few seconds cannot
# hold one of the pool's connections, which webhook ingest needs.
STATEMENT_TIMEOUT_MS = 5000

router = APIRouter(tags=["dashboard"])
operator_router = APIRouter(prefix="/v1", tags=["operator"], dependencies=[Depends(require_operator)])


class Dashboard(Figures):
    health: Health
    thresholds: Thresholds
    jaeger_url: str | None
    """Jaeger UI from `FESTIVAL_JAEGER_UI_URL`, or null when it is unset."""


@router.get("/painel", response_class=HTMLResponse, include_in_schema=False)
async def dashboard_page() -> HTMLResponse:
    """Serve the dashboard page. Its script prompts for the token and fetches the figures."""
    return HTMLResponse(TEMPLATE.read_text(encoding="utf-8"), headers=NO_CACHE)


@router.get("/painel/static/{name}", include_in_schema=False)
async def dashboard_static(name: str) -> Response:
    """Serve the page's own script and style sheet."""
    media_type = STATIC_FILES.get(name)
    if media_type is None:
        raise ProblemError(404, "not_found", "Not found", f"Arquivo {name!r} não encontrado.")
    return FileResponse(STATIC_DIR / name, media_type=media_type, headers=NO_CACHE)


@operator_router.get("/dashboard", response_model=Dashboard, responses=PROBLEM_RESPONSES)
async def get_dashboard(request: Request) -> Dashboard:
    """Return the platform's health figures: traffic, queues, failures, latency, subscriptions and draws."""
    settings = request.app.state.settings
    pool: asyncpg.Pool = request.app.state.pool
    partners = sorted(request.app.state.verifiers)
    consumers = sorted(set(chain.from_iterable(CONSUMERS_BY_TOPIC.values())))

    # The request has no server span (gateway.telemetry excludes it), so without suppression each
    # query of every poll would start a trace of its own.
    try:
        with telemetry.suppressed():
            async with pool.acquire() as connection, connection.transaction(readonly=True, isolation="repeatable_read"):
                await connection.execute(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}")
                figures = await read_figures(connection, partners, consumers)
    except asyncpg.QueryCanceledError as error:
        logger.warning("dashboard figures timed out timeout_ms=%d", STATEMENT_TIMEOUT_MS)
        raise ProblemError(
            503,
            "dashboard_timeout",
            "Dashboard figures timed out",
            "O banco de dados demorou demais para calcular os números do painel; tente de novo em instantes.",
        ) from error

    thresholds = thresholds_for(settings.redelivery_after_seconds)
    return Dashboard(
        **dict(figures),
        health=assess(figures, thresholds),
        thresholds=thresholds,
        jaeger_url=settings.jaeger_ui_url,
    )


router.include_router(operator_router)
