"""Operator API (subscription view, dead letters), probes and the app's problem responses."""

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from festival.settings import Settings
from tests.conftest import OPERATOR_TOKEN

AUTH = {"authorization": f"Bearer {OPERATOR_TOKEN}"}
PAID_AT = datetime(2025, 3, 1, 15, 0, tzinfo=UTC)


async def _add_subscription(db: asyncpg.Connection) -> uuid.UUID:
    """Store one subscription with a payment, a lucky number and a history entry; return the draw id."""
    draw_id = uuid.uuid4()
    await db.execute(
        "INSERT INTO subscriptions (ref, user_id, plan, status, current_period_end, version)"
        " VALUES ('sub_1', 'user_1', 'anual', 'active', $1, 3)",
        PAID_AT + timedelta(days=365),
    )
    await db.execute(
        "INSERT INTO customers (subscription_ref, name, email, cpf, phone)"
        " VALUES ('sub_1', 'Conceição Araújo', 'c@example.com', '123.456.789-09', '+5511987654321')"
    )
    await db.execute(
        "INSERT INTO payments (charge_id, subscription_ref, event_id, method, amount, refunded_amount, status, paid_at)"
        " VALUES ('ch_1', 'sub_1', $1, 'pix', 29.9, 5, 'confirmed', $2)",
        uuid.uuid4(), PAID_AT,
    )
    await db.execute(
        "INSERT INTO draws (id, title, scheduled_at, cutoff_at, series, number_key)"
        " VALUES ($1, 'Sorteio de março', $2, $2, 1, '\\x00')",
        draw_id, PAID_AT + timedelta(days=30),
    )
    await db.execute(
        "INSERT INTO lucky_numbers (draw_id, number, subscription_ref, charge_id, voided_at)"
        " VALUES ($1, 4217, 'sub_1', 'ch_1', NULL), ($1, 99, 'sub_1', 'ch_1', now())",
        draw_id,
    )
    await db.execute(
        "INSERT INTO subscription_history (subscription_ref, event_id, from_status, to_status, reason, occurred_at)"
        " VALUES ('sub_1', $1, 'pending_payment', 'active', 'payment confirmed', $2)",
        uuid.uuid4(), PAID_AT,
    )
    return draw_id


async def test_subscription_view(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    draw_id = await _add_subscription(db)

    response = await client.get("/v1/subscriptions/sub_1", headers=AUTH)

    view = response.json()
    assert response.status_code == 200
    assert (view["status"], view["plan"], view["user_id"], view["version"]) == ("active", "anual", "user_1", 3)
    assert view["current_period_end"].startswith("2026-03-01")
    assert view["payments"] == [{
        "charge_id": "ch_1",
        "method": "pix",
        "amount": "29.90",
        "status": "confirmed",
        "paid_at": "2025-03-01T15:00:00Z",
        "refunded_amount": "5.00",
    }]
    assert {(item["number"], item["voided"]) for item in view["lucky_numbers"]} == {(4217, False), (99, True)}
    assert {item["draw_id"] for item in view["lucky_numbers"]} == {str(draw_id)}
    assert [(item["from_status"], item["to_status"]) for item in view["history"]] == [("pending_payment", "active")]


async def test_subscription_view_no_personal_data(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    await _add_subscription(db)

    response = await client.get("/v1/subscriptions/sub_1", headers=AUTH)

    for value in ("123.456.789-09", "c@example.com", "Conceição", "+5511987654321"):
        assert value not in response.text


async def test_subscription_unknown(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/subscriptions/sub_missing", headers=AUTH)

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "subscription_not_found"


async def test_subscription_ref_nul_character(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/subscriptions/sub%00", headers=AUTH)

    assert response.status_code == 422
    assert response.json()["errors"][0]["pointer"] == "#/path/subscription_ref"


@pytest.mark.parametrize("headers", [{}, {"authorization": "Bearer wrong"}, {"authorization": "Basic b3A6b3A="}],
                         ids=["missing", "wrong", "basic"])
async def test_operator_token_required(client: httpx.AsyncClient, db: asyncpg.Connection, headers: dict[str, str]) -> None:
    await _add_subscription(db)

    response = await client.get("/v1/subscriptions/sub_1", headers=headers)

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["code"] == "unauthorized"
    assert "active" not in response.text


async def _add_dead_letter(db: asyncpg.Connection, settings: Settings) -> tuple[int, uuid.UUID]:
    event_id = uuid.uuid4()
    await db.execute(
        "INSERT INTO outbox (event_id, topic, envelope, published_at) VALUES ($1, $2, '{}'::jsonb, now())",
        event_id, f"{settings.topic_root}/payments/confirmed",
    )
    await db.execute(
        "INSERT INTO deliveries (event_id, consumer, status, attempts, due_at, last_error)"
        " VALUES ($1, 'payments', 'dead', 5, now() + interval '1 day', 'boom')",
        event_id,
    )
    dead_letter_id = await db.fetchval(
        "INSERT INTO dead_letters (event_id, consumer, topic, error, attempts)"
        " VALUES ($1, 'payments', $2, 'boom', 5) RETURNING id",
        event_id, f"{settings.topic_root}/payments/confirmed",
    )
    return dead_letter_id, event_id


async def test_dead_letters_listed(client: httpx.AsyncClient, db: asyncpg.Connection, settings: Settings) -> None:
    first, event_id = await _add_dead_letter(db, settings)
    await _add_dead_letter(db, settings)

    response = await client.get("/v1/dead-letters", params={"limit": 1}, headers=AUTH)

    page = response.json()
    assert response.status_code == 200
    assert [(item["id"], item["event_id"], item["consumer"]) for item in page["items"]] == [(first, str(event_id), "payments")]
    assert page["next_after"] == first


async def test_dead_letters_last_page(client: httpx.AsyncClient, db: asyncpg.Connection, settings: Settings) -> None:
    first, _ = await _add_dead_letter(db, settings)
    second, _ = await _add_dead_letter(db, settings)

    response = await client.get("/v1/dead-letters", params={"after": first}, headers=AUTH)

    page = response.json()
    assert [item["id"] for item in page["items"]] == [second]
    assert page["next_after"] is None


async def test_dead_letter_replay_resets_delivery(client: httpx.AsyncClient, db: asyncpg.Connection, settings: Settings) -> None:
    dead_letter_id, event_id = await _add_dead_letter(db, settings)

    response = await client.post(f"/v1/dead-letters/{dead_letter_id}/replay", headers=AUTH)

    delivery = await db.fetchrow(
        "SELECT status, attempts, due_at <= now() AS due FROM deliveries WHERE event_id = $1", event_id
    )
    assert response.status_code == 200
    assert response.json()["event_id"] == str(event_id)
    assert dict(delivery) == {"status": "pending", "attempts": 0, "due": True}
    assert await db.fetchval("SELECT replayed_at IS NOT NULL FROM dead_letters WHERE id = $1", dead_letter_id)


async def test_dead_letter_replayed_leaves_list(client: httpx.AsyncClient, db: asyncpg.Connection, settings: Settings) -> None:
    dead_letter_id, _ = await _add_dead_letter(db, settings)
    await client.post(f"/v1/dead-letters/{dead_letter_id}/replay", headers=AUTH)

    response = await client.get("/v1/dead-letters", headers=AUTH)

    assert response.json()["items"] == []


async def test_dead_letter_replay_twice(client: httpx.AsyncClient, db: asyncpg.Connection, settings: Settings) -> None:
    dead_letter_id, _ = await _add_dead_letter(db, settings)
    await client.post(f"/v1/dead-letters/{dead_letter_id}/replay", headers=AUTH)

    response = await client.post(f"/v1/dead-letters/{dead_letter_id}/replay", headers=AUTH)

    assert response.status_code == 409
    assert response.json()["code"] == "dead_letter_already_replayed"


async def test_dead_letter_replay_unknown(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/dead-letters/424242/replay", headers=AUTH)

    assert response.status_code == 404


async def test_dead_letter_replay_id_past_bigint(client: httpx.AsyncClient) -> None:
    response = await client.post(f"/v1/dead-letters/{2**63}/replay", headers=AUTH)

    assert response.status_code == 422
    assert response.json()["errors"][0]["pointer"] == "#/path/dead_letter_id"


async def test_dead_letters_after_past_bigint(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/dead-letters", params={"after": 2**63}, headers=AUTH)

    assert response.status_code == 422
    assert response.json()["errors"][0]["pointer"] == "#/query/after"


async def test_dead_letters_token_required(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/dead-letters")

    assert response.status_code == 401


async def test_query_validation_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/dead-letters", params={"limit": "many"}, headers=AUTH)

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["pointer"] == "#/query/limit"


async def test_probes(client: httpx.AsyncClient) -> None:
    healthz = await client.get("/healthz")
    readyz = await client.get("/readyz")

    assert healthz.status_code == 200
    assert readyz.status_code == 200


async def test_unknown_path_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/nowhere")

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == "O recurso pedido não existe."


async def test_wrong_method_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/webhooks/nix")

    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"


async def test_readyz_database_down(client: httpx.AsyncClient) -> None:
    await client.app.state.pool.close()  # type: ignore[attr-defined]

    response = await client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["code"] == "database_unavailable"


async def test_unexpected_error_problem(client: httpx.AsyncClient) -> None:
    await client.app.state.pool.close()  # type: ignore[attr-defined]

    response = await client.get("/v1/subscriptions/sub_1", headers=AUTH)

    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "internal_error"
    assert response.json()["detail"].startswith("Erro interno")


async def test_openapi_lists_webhooks(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")

    document = response.json()
    assert "/webhooks/nix/pix" in document["paths"]
    assert "NixEvent" in document["components"]["schemas"]
