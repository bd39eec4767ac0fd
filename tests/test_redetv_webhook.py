"""`POST /webhooks/redetv` against PostgreSQL: inbox, customers and outbox in one transaction."""

import json
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx

from festival.settings import Settings
from tests.gateway_support import SECOND_SECRET, gateway_client, signed_headers
from tests.subscription_flow_support import REF, USER, redetv_event

AT = datetime(2026, 3, 1, 15, 0, tzinfo=UTC)
PERSONAL = ("Conceição", "conceicao@example.com", "123.456.789-09", "+5511987654321")


async def _post(client: httpx.AsyncClient, body: dict[str, object], **signing: object) -> httpx.Response:
    raw = json.dumps(body, ensure_ascii=False).encode()
    return await client.post("/webhooks/redetv", content=raw, headers=signed_headers(raw, **signing))  # type: ignore[arg-type]


async def test_created_accepted(client: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    response = await _post(client, redetv_event("subscription.created", at=AT, period_end=AT + timedelta(days=30)))

    outbox = await pool.fetchrow("SELECT topic, envelope FROM outbox")
    inbox = await pool.fetchrow("SELECT partner, event_ids FROM inbox")
    data = outbox["envelope"]["data"]
    assert response.status_code == 202
    assert response.json()["event_ids"] == [str(inbox["event_ids"][0])]
    assert inbox["partner"] == "redetv"
    assert outbox["topic"].endswith("/subscriptions/updated")
    assert outbox["envelope"]["type"] == "festival.subscription.updated.v1"
    assert data["subscription_ref"] == REF
    assert data["user_id"] == USER
    assert data["kind"] == "created"
    assert data["occurred_at"] == "2026-03-01T15:00:00Z"


async def test_event_has_no_personal_data(client: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    await _post(client, redetv_event("subscription.created", at=AT))

    envelope = json.dumps(await pool.fetchval("SELECT envelope FROM outbox"), ensure_ascii=False)
    for value in PERSONAL:
        assert value not in envelope, value


async def test_user_stored_in_customers(client: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    await _post(client, redetv_event("subscription.created", at=AT))

    row = await pool.fetchrow("SELECT user_id, name, email, cpf, phone FROM customers WHERE subscription_ref = $1", REF)
    assert row["user_id"] == USER
    assert row["name"] == "Conceição Araújo"
    assert row["email"] == "conceicao@example.com"
    assert row["cpf"] == "123.456.789-09"


async def test_user_updated_changes_customer(client: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    await _post(client, redetv_event("subscription.created", at=AT))
    update = {
        "event_id": "rtv_user_1",
        "event": "user.updated",
        "occurred_at": (AT + timedelta(hours=1)).isoformat(),
        "user": {"id": USER, "email": "nova@example.com"},
    }

    response = await _post(client, update)

    row = await pool.fetchrow("SELECT name, email FROM customers WHERE subscription_ref = $1", REF)
    events = await pool.fetchval("SELECT count(*) FROM outbox")
    assert response.status_code == 202
    assert response.json()["event_ids"] == []
    assert row["email"] == "nova@example.com"
    assert row["name"] == "Conceição Araújo"
    assert events == 1


def _user_updated(event_id: str, at: datetime, **fields: str) -> dict[str, object]:
    return {"event_id": event_id, "event": "user.updated", "occurred_at": at.isoformat(), "user": {"id": USER, **fields}}


async def _customer(pool: asyncpg.Pool) -> asyncpg.Record:
    return await pool.fetchrow("SELECT user_id, name, email, phone FROM customers WHERE subscription_ref = $1", REF)


async def test_user_updated_before_created(client: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    await _post(client, _user_updated("rtv_user_early", AT + timedelta(hours=1), email="nova@example.com"))
    await _post(client, redetv_event("subscription.created", at=AT))

    row = await _customer(pool)
    assert row["user_id"] == USER
    assert row["email"] == "nova@example.com"
    assert row["name"] == "Conceição Araújo"


async def test_older_user_update_keeps_newer(client: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    await _post(client, redetv_event("subscription.created", at=AT))
    await _post(client, _user_updated("rtv_user_new", AT + timedelta(hours=2), email="nova@example.com"))
    await _post(client, _user_updated("rtv_user_old", AT + timedelta(hours=1), email="velha@example.com", phone="+5521912345678"))

    row = await _customer(pool)
    assert row["email"] == "nova@example.com"
    assert row["phone"] == "+5511987654321"


async def test_event_without_user_takes_known(client: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    await _post(client, _user_updated("rtv_user_first", AT, name="Maria Souza", email="maria@example.com"))
    created = redetv_event("subscription.created", at=AT + timedelta(minutes=5))
    del created["user"]

    response = await _post(client, created)

    row = await _customer(pool)
    assert response.status_code == 202
    assert row["name"] == "Maria Souza"
    assert row["email"] == "maria@example.com"


async def test_redelivery_returns_first_ids(client: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    body = redetv_event("subscription.renewed", at=AT)

    first = await _post(client, body, webhook_id="msg_first")
    same_delivery = await _post(client, body, webhook_id="msg_first")
    same_event = await _post(client, body, webhook_id="msg_second")

    assert first.status_code == 202
    assert same_delivery.status_code == 200
    assert same_event.status_code == 200
    assert same_delivery.json()["event_ids"] == first.json()["event_ids"]
    assert same_event.json()["event_ids"] == first.json()["event_ids"]
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 1


async def test_rotated_secret_accepted(client: httpx.AsyncClient) -> None:
    # Only the first configured secret is valid; the partner signs with an unknown one and the valid one.
    raw = json.dumps(redetv_event("subscription.created", at=AT)).encode()
    valid = signed_headers(raw, webhook_id="msg_rot")
    other = signed_headers(raw, webhook_id="msg_rot", secret=SECOND_SECRET)
    valid["webhook-signature"] = f"{other['webhook-signature']} {valid['webhook-signature']}"

    response = await client.post("/webhooks/redetv", content=raw, headers=valid)

    assert response.status_code == 202


async def test_unknown_secret_rejected(settings: Settings, pool: asyncpg.Pool) -> None:
    settings = settings.model_copy(update={"redetv_webhook_secrets": [SECOND_SECRET]})
    async with gateway_client(settings) as client:
        response = await _post(client, redetv_event("subscription.created", at=AT))

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_signature"
    assert await pool.fetchval("SELECT count(*) FROM inbox") == 0


async def test_missing_subscription_rejected(client: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    body = redetv_event("subscription.cancelled", at=AT)
    del body["subscription"]

    response = await _post(client, body)

    assert response.status_code == 422
    assert response.json()["code"] == "validation_failed"
    assert await pool.fetchval("SELECT count(*) FROM inbox") == 0


async def test_invalid_fields_not_echoed(client: httpx.AsyncClient) -> None:
    body = redetv_event("subscription.created", at=AT)
    body["occurred_at"] = "ontem"
    body["user"]["cpf"] = 12345678909  # type: ignore[index]

    response = await _post(client, body)

    pointers = {error["pointer"] for error in response.json()["errors"]}
    assert response.status_code == 422
    assert "#/occurred_at" in pointers
    assert "ontem" not in response.text
    assert "12345678909" not in response.text


async def test_nul_in_user_rejected(client: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    body = redetv_event("subscription.created", at=AT)
    body["user"]["name"] = "Conceição\x00"  # type: ignore[index]

    response = await _post(client, body)

    assert response.status_code == 422
    assert response.json()["errors"][0]["pointer"] == "#/user/name"
    assert "Conceição" not in response.text
    assert await pool.fetchval("SELECT count(*) FROM inbox") == 0


async def test_unknown_fields_kept(client: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    body = redetv_event("subscription.created", at=AT)
    body["campaign"] = "verao"

    response = await _post(client, body)

    raw = await pool.fetchval("SELECT body FROM inbox")
    assert response.status_code == 202
    assert b'"campaign": "verao"' in raw
