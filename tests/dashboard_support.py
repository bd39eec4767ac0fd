"""Helpers for the dashboard tests: signed partner webhooks and draws stored directly."""

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx

from tests.gateway_support import encode, nix_event, post_signed
from tests.subscription_flow_support import redetv_event

PERSONAL = ("Conceição", "conceicao@example.com", "123.456.789-09", "+5511987654321")


async def send_webhooks(client: httpx.AsyncClient, *, nix: int, redetv: int) -> None:
    """Post signed NIX `charge.paid` and REDETV!PLUS `subscription.created` webhooks, each accepted."""
    for index in range(nix):
        body = encode(nix_event("charge.paid", charge_id=f"ch_dash_{index}", subscription_ref=f"sub_dash_{index}"))
        response = await post_signed(client, "/webhooks/nix", body)
        assert response.status_code == 202, response.text

    for index in range(redetv):
        event = redetv_event("subscription.created", at=datetime.now(UTC), ref=f"sub_dash_{index}", user_id=f"usr_dash_{index}")
        response = await post_signed(client, "/webhooks/redetv", encode(event))
        assert response.status_code == 202, response.text


async def add_draw(
    db: asyncpg.Connection,
    *,
    title: str,
    status: str,
    scheduled_at: datetime,
    started_at: datetime | None = None,
    completed_at: datetime | None = None,
    issued_count: int = 0,
) -> uuid.UUID:
    draw_id = uuid.uuid4()
    await db.execute(
        "INSERT INTO draws (id, title, status, scheduled_at, cutoff_at, series, number_key, issued_count,"
        " started_at, completed_at) VALUES ($1, $2, $3, $4, $5, 1, '\\x00', $6, $7, $8)",
        draw_id, title, status, scheduled_at, scheduled_at - timedelta(minutes=5), issued_count, started_at, completed_at,
    )
    return draw_id
