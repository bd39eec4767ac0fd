"""Helpers for subscription flow tests: the platform in process and signed partner webhooks."""

import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import asyncpg
import httpx
from pydantic import SecretStr

from festival.settings import Settings
from tests.fake_redetv_plus import TOKEN, SlowRedetvPlus
from tests.gateway_support import customer, gateway_client, nix_event, signed_headers
from tests.pipeline import running_consumer, running_relay

REF = "sub_flow_1"
USER = "usr_flow_1"


def with_redetv_api(settings: Settings, fake: SlowRedetvPlus) -> Settings:
    return settings.model_copy(update={"redetv_api_url": fake.url, "redetv_api_token": SecretStr(TOKEN)})


@contextlib.asynccontextmanager
async def running_platform(
    settings: Settings, pool: asyncpg.Pool, consumers: tuple[str, ...] = ("payments", "subscriptions")
) -> AsyncIterator[httpx.AsyncClient]:
    """Run the gateway (in process, behind the yielded client), the relay and `consumers`."""
    async with contextlib.AsyncExitStack() as stack:
        client = await stack.enter_async_context(gateway_client(settings))
        await stack.enter_async_context(running_relay(settings, pool))
        for name in consumers:
            await stack.enter_async_context(running_consumer(name, settings, pool))
        yield client


def redetv_event(
    event: str,
    *,
    at: datetime,
    ref: str = REF,
    user_id: str = USER,
    event_id: str | None = None,
    plan: str = "mensal",
    period_end: datetime | None = None,
) -> dict[str, Any]:
    """Build a REDETV!PLUS webhook body with a subscription and its user."""
    return {
        "event_id": event_id or f"rtv_{uuid.uuid4().hex}",
        "event": event,
        "occurred_at": at.isoformat(),
        "subscription": {
            "id": ref,
            "user_id": user_id,
            "plan": plan,
            "status": event.removeprefix("subscription."),
            "current_period_end": period_end.isoformat() if period_end else None,
        },
        "user": {"id": user_id, **customer()},
    }


def paid(charge_id: str, *, at: datetime, ref: str = REF, amount: str = "29.90") -> dict[str, Any]:
    return nix_event("charge.paid", charge_id=charge_id, subscription_ref=ref, amount=amount, paid_at=at.isoformat())


def refunded(charge_id: str, *, at: datetime, amount: str, ref: str = REF, refund_id: str = "rf_flow_1") -> dict[str, Any]:
    body = nix_event(
        "charge.refunded",
        charge_id=charge_id,
        subscription_ref=ref,
        refund={"id": refund_id, "amount": amount, "status": "DEVOLVIDO"},
    )
    body["created_at"] = at.isoformat()
    return body


async def post(client: httpx.AsyncClient, path: str, body: dict[str, Any], *, webhook_id: str | None = None) -> int:
    """Sign `body` as the partner would and post it; return the status code."""
    raw = json.dumps(body, ensure_ascii=False).encode()
    response = await client.post(path, content=raw, headers=signed_headers(raw, webhook_id=webhook_id))
    return response.status_code


async def settled(pool: asyncpg.Pool) -> bool:
    """Return whether every delivery of every consumer has been applied or dead-lettered."""
    open_deliveries = await pool.fetchval("SELECT count(*) FROM deliveries WHERE status = 'pending'")
    return bool(await pool.fetchval("SELECT count(*) FROM deliveries")) and open_deliveries == 0


async def history_facts(pool: asyncpg.Pool, ref: str = REF) -> list[str]:
    rows = await pool.fetch("SELECT fact FROM subscription_history WHERE subscription_ref = $1 ORDER BY id", ref)
    return [row["fact"] for row in rows]


async def notification_kinds(pool: asyncpg.Pool, ref: str = REF) -> list[str]:
    rows = await pool.fetch("SELECT kind FROM notifications WHERE subscription_ref = $1 ORDER BY id", ref)
    return [row["kind"] for row in rows]
