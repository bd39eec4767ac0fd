"""Webhook routes: served the same way past the router or through it, and documented in OpenAPI."""

import logging
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from festival.settings import Settings
from gateway.app import create_app
from tests.gateway_support import encode, nix_event, post_signed

ROOT_PATH = "/api"


@pytest.fixture
async def routed(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A client under a root path, where `WebhookShortcut` leaves the webhooks to the router."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, root_path=ROOT_PATH)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            yield client


async def test_routed_delivery_recorded(routed: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    response = await post_signed(routed, f"{ROOT_PATH}/webhooks/nix", encode(nix_event("charge.paid")))

    assert response.status_code == 202
    assert response.json()["status"] == "accepted"
    assert await pool.fetchval("SELECT count(*) FROM inbox") == 1
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 1


async def test_routed_rejection_problem(routed: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    headers = {"content-type": "application/json"}

    through_router = await routed.post(f"{ROOT_PATH}/webhooks/nix", content=b"{}", headers=headers)
    past_router = await client.post("/webhooks/nix", content=b"{}", headers=headers)

    assert through_router.status_code == 401
    assert through_router.headers["content-type"] == "application/problem+json"
    assert through_router.json()["instance"] == f"{ROOT_PATH}/webhooks/nix"
    assert past_router.json()["instance"] == "/webhooks/nix"
    assert through_router.json()["code"] == past_router.json()["code"] == "signature_missing"
    assert through_router.json()["detail"] == past_router.json()["detail"]


async def test_openapi_describes_webhook(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()

    operation = document["paths"]["/webhooks/nix"]["post"]
    headers = {parameter["name"] for parameter in operation["parameters"] if parameter["in"] == "header"}
    assert operation["operationId"] == "receive_nix_event_webhooks_nix_post"
    assert operation["description"] == "Receive one signed NIX charge event."
    assert operation["tags"] == ["webhooks"]
    assert headers == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/NixEvent"}
    assert {"200", "202", "4XX", "5XX"} <= set(operation["responses"])
    assert "/webhooks/redetv" in document["paths"]


async def test_disconnect_mid_body(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(settings)
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/webhooks/nix", "raw_path": b"/webhooks/nix", "root_path": "", "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"100")],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80),
    }
    messages = [{"type": "http.request", "body": b"{", "more_body": True}, {"type": "http.disconnect"}]
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return messages.pop(0)

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    with caplog.at_level(logging.INFO):
        await app(scope, receive, send)

    assert sent == []
    assert "webhook client disconnected partner=nix" in caplog.text
    assert "request failed" not in caplog.text
