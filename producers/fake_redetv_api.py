"""A FAKE REDETV!PLUS entitlements API for `festival up --demo`, so entitlement pushes can be watched.

It replaces the partner's remote API only. It checks the bearer token and the body's shape, keeps
the last entitlement per user in memory, logs each push (user id and active flag only), and
lists what it received at `GET /v1/entitlements`. It never runs unless the launcher starts
it for the demo, on 127.0.0.1.
"""

import asyncio
import contextlib
import hmac
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import uvicorn
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from festival.settings import Settings

logger = logging.getLogger(__name__)


class Entitlement(BaseModel):
    active: bool
    until: datetime
    reason: str


def create_app(token: str) -> Starlette:
    """Return the fake API, accepting `Authorization: Bearer {token}` only."""
    received: dict[str, dict[str, Any]] = {}

    def authorized(request: Request) -> bool:
        return hmac.compare_digest(request.headers.get("authorization", ""), f"Bearer {token}")

    async def put_entitlement(request: Request) -> Response:
        if not authorized(request):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        user_id = request.path_params["user_id"]
        try:
            entitlement = Entitlement.model_validate_json(await request.body())
        except ValidationError as error:
            logger.warning("fake entitlement rejected user_id=%s errors=%d", user_id, error.error_count())
            return JSONResponse({"error": "invalid body"}, status_code=422)

        received[user_id] = entitlement.model_dump(mode="json")
        logger.info("fake entitlement received user_id=%s active=%s", user_id, entitlement.active)
        return Response(status_code=204)

    async def list_entitlements(request: Request) -> Response:
        if not authorized(request):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        return JSONResponse(received)

    return Starlette(
        routes=[
            Route("/v1/entitlements/{user_id}", put_entitlement, methods=["PUT"]),
            Route("/v1/entitlements", list_entitlements, methods=["GET"]),
        ]
    )


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the `festival` command."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_fake_api(settings: Settings, port: int) -> None:
    """Serve the fake API on 127.0.0.1:`port` with the configured REDETV!PLUS token until cancelled."""
    if settings.redetv_api_token is None:
        raise ValueError("FESTIVAL_REDETV_API_TOKEN is not set: the fake API needs the token it accepts")

    config = uvicorn.Config(
        create_app(settings.redetv_api_token.get_secret_value()),
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        lifespan="off",
    )
    server = _Server(config)
    logger.info("fake REDETV!PLUS entitlements API started port=%d", port)
    task = asyncio.create_task(server.serve(), name="fake-redetv-api")
    try:
        await asyncio.shield(task)
    finally:
        server.should_exit = True
        await asyncio.gather(task, return_exceptions=True)
        logger.info("fake REDETV!PLUS entitlements API stopped")
