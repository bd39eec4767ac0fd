"""Signed webhook endpoints served as plain ASGI apps and documented as FastAPI routes.

A webhook endpoint reads its raw body itself, because the signature covers the bytes as
received, so FastAPI's request handling (dependency solving, `Request` and `Response` objects)
does nothing for it but costs time on every delivery. `WebhookRoute` is an `APIRoute`, so the
OpenAPI document describes it like any other route, but the ASGI app it runs is a
`WebhookEndpoint`: size, content type and signature checks, validation, the partner's ingest
function and the response, or the problem response of a `ProblemError`.

`WebhookShortcut`, the innermost middleware, hands a `POST` to a webhook path straight to its
endpoint, past the exception middleware and the router. Their work was about a tenth of the
gateway's CPU time per delivery (see the ingest section of bench/README.md). The app's other
middleware (unhandled errors, telemetry) still wraps the endpoint, and every other request, such
as a `GET` to a webhook path (405), goes through the router.
"""

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Generic

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.datastructures import State
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.inbox import IngestResult
from gateway.intake import ModelT, SignedDelivery, parse_body, receive_signed
from gateway.openapi import WEBHOOK_RESPONSES, signed_json_body
from gateway.problems import ProblemError, problem_response

logger = logging.getLogger(__name__)

# A partner's ingest function receives the app's state, the verified delivery and its validated
# body, and records them.
IngestFunction = Callable[[State, SignedDelivery, ModelT], Awaitable[IngestResult]]


class WebhookEndpoint(Generic[ModelT]):
    """The ASGI app of one signed webhook route. `partner` names its verifier in `app.state.verifiers`."""

    def __init__(self, partner: str, model: type[ModelT], ingest: IngestFunction[ModelT]) -> None:
        self.partner = partner
        self.model = model
        self.ingest = ingest

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state: State = scope["app"].state
        try:
            delivery = await receive_signed(
                scope, receive, state.verifiers[self.partner], state.settings.webhook_max_body_bytes
            )
            body = parse_body(delivery, self.model)
            result = await self.ingest(state, delivery, body)
        except ProblemError as error:
            # The same response as the app's ProblemError handler, which `WebhookShortcut` bypasses.
            await problem_response(error, scope["path"])(scope, receive, send)
            return
        except ClientDisconnect:
            # Nothing was recorded and no one is left to read a response. The partner retries a
            # delivery that got no 2xx.
            logger.info("webhook client disconnected partner=%s path=%s", self.partner, scope["path"])
            return
        await result.send_response(send)


async def _documentation_only() -> Response:
    # FastAPI reads the endpoint's signature to describe the route, but `WebhookRoute` never calls it.
    raise NotImplementedError("WebhookRoute serves requests with its WebhookEndpoint")


class WebhookRoute(APIRoute):
    """A `POST` route whose name and description come from the ingest function's name and docstring."""

    def __init__(self, path: str, endpoint: WebhookEndpoint[ModelT]) -> None:
        super().__init__(
            path,
            _documentation_only,
            methods=["POST"],
            name=endpoint.ingest.__name__,
            description=inspect.getdoc(endpoint.ingest) or "",
            status_code=202,
            tags=["webhooks"],
            responses=WEBHOOK_RESPONSES,
            openapi_extra=signed_json_body(endpoint.model),
        )
        # Starlette's `Route.handle` checks the method (405 otherwise) and then calls `self.app`.
        self.app = endpoint
        self.webhook = endpoint


class WebhookShortcut:
    """Middleware that calls the endpoint of a `POST` to a webhook path without routing."""

    def __init__(self, app: ASGIApp, endpoints: Mapping[str, WebhookEndpoint[Any]]) -> None:
        self.app = app
        self.endpoints = endpoints

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Under a root path the router strips it before matching, so those requests take the router.
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            endpoint = self.endpoints.get(scope["path"])
            if endpoint is not None:
                await endpoint(scope, receive, send)
                return
        await self.app(scope, receive, send)


def install_webhook_routes(app: FastAPI, routes: list[WebhookRoute]) -> None:
    """Put `routes` first in the app's router and add `WebhookShortcut` as the innermost middleware.

    The routes' paths are fixed and no other route's pattern matches them, so their place in the
    router changes no match. They stay in the router for the OpenAPI document, for the 405 response
    to other methods and for requests under a root path.
    """
    app.router.routes[0:0] = routes
    # Starlette builds the stack with the first entry of `user_middleware` outermost.
    endpoints = {route.path: route.webhook for route in routes}
    app.user_middleware.append(Middleware(WebhookShortcut, endpoints=endpoints))
