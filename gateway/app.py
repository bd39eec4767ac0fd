"""The ASGI application: partner webhooks, operator API and probes.

To add routes, append the module's router to `routers()`, or a signed partner webhook's
`WebhookRoute` to `webhook_routes()`; nothing else needs to change.
"""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi_offline import FastAPIOffline

from festival.db import create_pool
from festival.outbox import Outbox
from festival.settings import Settings
from gateway.nix_batch import NixBatchWriter
from gateway.openapi import install_openapi_components
from gateway.problems import install_problem_handlers
from gateway.signing import WebhookVerifier
from gateway.telemetry import fastapi_telemetry, instrument
from gateway.webhook_route import WebhookRoute, install_webhook_routes

logger = logging.getLogger(__name__)

# NOTE: a guess, not measured. Each ingest request uses a connection for one short transaction.
POOL_MAX_SIZE = 10


def routers() -> list[APIRouter]:
    """Return every router of the gateway, in the order they are included."""
    from gateway import (
        asyncapi_routes,
        dashboard,
        dead_letter_api,
        draws_api,
        health,
        live_events,
        live_page,
        subscription_api,
    )

    # The live events come before the live page, whose `/ao-vivo/{draw_id}` would match `/ao-vivo/eventos`.
    return [
        health.router,
        subscription_api.router,
        dead_letter_api.router,
        draws_api.operator_router,
        draws_api.public_router,
        live_events.router,
        live_page.router,
        asyncapi_routes.router,
        dashboard.router,
    ]


def webhook_routes() -> list[WebhookRoute]:
    """Return the signed partner webhook routes, which the router matches before every other route."""
    from gateway import nix, redetv

    return [*nix.routes, *redetv.routes]


def create_app(settings: Settings) -> FastAPI:
    """Build the gateway; its lifespan opens the database pool and closes it."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = await create_pool(settings.require_database_url(), max_size=POOL_MAX_SIZE)
        app.state.nix_writer = NixBatchWriter(app.state.pool, app.state.outbox)
        app.state.nix_writer.start()
        logger.info("gateway started pool_max_size=%d", POOL_MAX_SIZE)
        try:
            yield
        finally:
            await app.state.nix_writer.stop()
            await app.state.pool.close()
            logger.info("gateway stopped")

    # Swagger UI's files come from the fastapi-offline package: the default page loads them from a
    # CDN, and nothing at run time may download from elsewhere.
    app = FastAPIOffline(
        title="Festival de Prêmios",
        summary="Partner webhooks and operator API of the Festival de Prêmios event platform",
        version="1",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
        telemetry=fastapi_telemetry(),
    )
    app.state.settings = settings
    app.state.outbox = Outbox.from_settings(settings)
    # One verifier per partner, looked up by name in `gateway.webhook_route.WebhookEndpoint`.
    app.state.verifiers = {
        "nix": WebhookVerifier("nix", settings.nix_webhook_secrets, settings.webhook_tolerance_seconds),
        "redetv": WebhookVerifier("redetv", settings.redetv_webhook_secrets, settings.webhook_tolerance_seconds),
    }

    install_problem_handlers(app)
    for router in routers():
        app.include_router(router)
    install_webhook_routes(app, webhook_routes())
    install_openapi_components(app)
    instrument(app)
    return app
