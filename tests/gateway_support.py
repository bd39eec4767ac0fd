"""Helpers for the gateway tests: a running app behind an httpx client, signed NIX deliveries."""

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
from standardwebhooks import Webhook

from festival.settings import Settings
from gateway.app import create_app
from tests.conftest import WEBHOOK_SECRET

SECOND_SECRET = "whsec_" + "c2Vjb25kLXNlY3JldC1kdXJpbmctcm90YXRpb24="
END_TO_END_ID = "E12345678202503011200abcdef12345"
TXID = "txid0000000000000000000000001"


@asynccontextmanager
async def gateway_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan and yield a client that calls it in process."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


def signed_headers(
    body: bytes,
    *,
    secret: str = WEBHOOK_SECRET,
    webhook_id: str | None = None,
    timestamp: datetime | None = None,
    content_type: str = "application/json",
) -> dict[str, str]:
    """Sign `body` with the reference `standardwebhooks` package, as a partner would."""
    webhook_id = webhook_id or f"msg_{uuid.uuid4().hex}"
    timestamp = timestamp or datetime.now(UTC)
    signature = Webhook(secret).sign(webhook_id, timestamp, body)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signature,
        "content-type": content_type,
    }


def customer() -> dict[str, str]:
    return {"name": "Conceição Araújo", "email": "conceicao@example.com", "cpf": "123.456.789-09", "phone": "+5511987654321"}


def nix_event(event_type: str, *, charge_id: str = "ch_1", **data: Any) -> dict[str, Any]:
    """Build a NIX event body; `data` overrides or adds fields of its `data` object."""
    body_data: dict[str, Any] = {
        "charge_id": charge_id,
        "subscription_ref": "sub_1",
        "amount": "29.90",
        "method": "card",
        "customer": customer(),
    }
    if event_type == "charge.paid":
        body_data["paid_at"] = "2025-03-01T12:00:00-03:00"
    if event_type == "charge.refunded":
        body_data["refund"] = {"id": "rf_1", "amount": "10.00", "status": "DEVOLVIDO"}
    if event_type == "charge.failed":
        body_data["failure_reason"] = "insufficient_funds"
    body_data.update(data)
    return {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": event_type,
        "created_at": "2025-03-01T12:00:05-03:00",
        "data": body_data,
    }


def pix_item(*, end_to_end_id: str = END_TO_END_ID, txid: str = TXID, valor: str = "29.90") -> dict[str, Any]:
    return {
        "endToEndId": end_to_end_id,
        "txid": txid,
        "valor": valor,
        "chave": "pix@festival.example",
        "horario": "2025-03-01T12:00:01.123-03:00",
        "infoPagador": "Boa sorte!",
    }


def encode(document: Any) -> bytes:
    return json.dumps(document, ensure_ascii=False).encode()


async def post_signed(
    client: httpx.AsyncClient, path: str, body: bytes, **signing: Any
) -> httpx.Response:
    return await client.post(path, content=body, headers=signed_headers(body, **signing))
