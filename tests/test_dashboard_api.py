"""`GET /v1/dashboard` against PostgreSQL: figures from signed webhooks and stored rows, and the page's files."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from pydantic import ValidationError

from festival.settings import Settings
from tests.conftest import OPERATOR_TOKEN
from tests.dashboard_support import PERSONAL, add_draw, send_webhooks
from tests.gateway_support import gateway_client

AUTH = {"authorization": f"Bearer {OPERATOR_TOKEN}"}


async def _dashboard(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/v1/dashboard", headers=AUTH)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _by(items: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    return {item[key]: item for item in items}


async def test_dashboard_without_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/dashboard")

    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "unauthorized"


async def test_dashboard_wrong_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/dashboard", headers={"authorization": "Bearer wrong-token"})

    assert response.status_code == 401


async def test_dashboard_empty_database(client: httpx.AsyncClient) -> None:
    body = await _dashboard(client)

    assert body["webhooks"] == [
        {"partner": "nix", "last_5_minutes": 0, "last_hour": 0},
        {"partner": "redetv", "last_5_minutes": 0, "last_hour": 0},
    ]
    assert body["outbox"] == {"unpublished": 0, "oldest_unpublished_seconds": None}
    assert [item["consumer"] for item in body["deliveries"]] == ["draws", "payments", "subscriptions"]
    assert all(item["pending"] == 0 for item in body["deliveries"])
    assert all(item["open"] == 0 for item in body["dead_letters"])
    assert body["latency"]["applied"] == 0
    assert body["latency"]["p50_ms"] is None
    assert body["subscriptions"]["by_status"] == []
    assert body["lucky_numbers"] == {"issued": 0, "grants_waiting": 0}
    assert body["next_draw"] is None
    assert body["last_draw"] is None
    assert body["jaeger_url"] is None


async def test_dashboard_empty_health(client: httpx.AsyncClient) -> None:
    body = await _dashboard(client)

    # With no draw scheduled, payments would earn numbers that no draw can issue.
    assert body["health"].pop("draws") == "attention"
    assert set(body["health"].values()) == {"ok"}


async def test_dashboard_counts_webhooks(client: httpx.AsyncClient) -> None:
    await send_webhooks(client, nix=3, redetv=2)

    body = await _dashboard(client)

    webhooks = _by(body["webhooks"], "partner")
    assert webhooks["nix"] == {"partner": "nix", "last_5_minutes": 3, "last_hour": 3}
    assert webhooks["redetv"] == {"partner": "redetv", "last_5_minutes": 2, "last_hour": 2}
    assert body["health"]["webhooks"] == "ok"


async def test_dashboard_counts_backlog(client: httpx.AsyncClient) -> None:
    await send_webhooks(client, nix=3, redetv=2)

    body = await _dashboard(client)

    # No relay runs here, so every event stays unpublished and every delivery pending.
    deliveries = _by(body["deliveries"], "consumer")
    assert body["outbox"]["unpublished"] == 5
    assert body["outbox"]["oldest_unpublished_seconds"] >= 0
    assert deliveries["payments"]["pending"] == 3
    assert deliveries["subscriptions"]["pending"] == 2
    assert deliveries["draws"]["pending"] == 0
    assert body["latency"]["not_applied"] == 5
    assert body["health"]["outbox"] == "ok"


async def test_dashboard_latency(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    await send_webhooks(client, nix=2, redetv=0)
    # Applied 20 ms and 40 ms after receipt, as the payments consumer would mark them.
    await db.execute(
        "UPDATE deliveries d SET status = 'applied', applied_at = i.received_at + make_interval(secs => s.seconds)"
        " FROM inbox i, (VALUES ('ch_dash_0', 0.020), ('ch_dash_1', 0.040)) AS s (charge_id, seconds)"
        " WHERE d.event_id = ANY (i.event_ids) AND convert_from(i.body, 'UTF8') LIKE '%' || s.charge_id || '%'"
    )

    latency = (await _dashboard(client))["latency"]

    assert latency["applied"] == 2
    assert latency["not_applied"] == 0
    assert latency["p50_ms"] == pytest.approx(30.0)
    assert latency["p99_ms"] == pytest.approx(39.8)


async def test_dashboard_slow_latency(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    await send_webhooks(client, nix=1, redetv=0)
    await db.execute(
        "UPDATE deliveries d SET status = 'applied', applied_at = i.received_at + interval '200 milliseconds'"
        " FROM inbox i WHERE d.event_id = ANY (i.event_ids)"
    )

    body = await _dashboard(client)

    assert body["latency"]["p99_ms"] == pytest.approx(200.0)
    assert body["health"]["latency"] == "attention"


async def test_dashboard_stalled_queues(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    await send_webhooks(client, nix=1, redetv=0)
    await db.execute("UPDATE outbox SET created_at = now() - interval '1 minute'")

    body = await _dashboard(client)

    assert body["outbox"]["oldest_unpublished_seconds"] >= 60
    assert _by(body["deliveries"], "consumer")["payments"]["oldest_pending_seconds"] >= 60
    assert body["health"]["outbox"] == "attention"
    assert body["health"]["deliveries"] == "attention"


async def test_dashboard_traffic_stopped(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    await send_webhooks(client, nix=1, redetv=0)
    await db.execute("UPDATE inbox SET received_at = now() - interval '10 minutes'")

    body = await _dashboard(client)

    assert _by(body["webhooks"], "partner")["nix"] == {"partner": "nix", "last_5_minutes": 0, "last_hour": 1}
    assert body["health"]["webhooks"] == "attention"


async def test_dashboard_dead_letters(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    await send_webhooks(client, nix=2, redetv=0)
    event_ids = [row["event_id"] for row in await db.fetch("SELECT event_id FROM outbox")]
    await db.execute(
        "INSERT INTO dead_letters (event_id, consumer, topic, error, attempts, replayed_at)"
        " VALUES ($1, 'payments', 't', 'boom', 5, NULL), ($2, 'payments', 't', 'boom', 5, now())",
        *event_ids,
    )

    body = await _dashboard(client)

    assert _by(body["dead_letters"], "consumer")["payments"]["open"] == 1
    assert body["health"]["dead_letters"] == "attention"


async def test_dashboard_subscriptions(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    await db.execute(
        "INSERT INTO subscriptions (ref, status) VALUES ('s1', 'active'), ('s2', 'active'), ('s3', 'past_due')"
    )
    await db.execute(
        "INSERT INTO illegal_transitions (subscription_ref, event_id, fact, reason, occurred_at)"
        " VALUES ('s3', 'evt_1', '{}', 'rejected', now())"
    )

    body = await _dashboard(client)

    subscriptions = body["subscriptions"]
    assert subscriptions["by_status"] == [{"status": "active", "count": 2}, {"status": "past_due", "count": 1}]
    assert subscriptions["total"] == 3
    assert subscriptions["illegal_transitions_open"] == 1
    assert body["health"]["subscriptions"] == "attention"


async def test_dashboard_draws(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    now = datetime.now(UTC)
    started = now - timedelta(days=7)
    next_id = await add_draw(db, title="Sorteio da semana", status="scheduled", scheduled_at=now + timedelta(hours=1), issued_count=40)
    last_id = await add_draw(
        db, title="Sorteio passado", status="completed", scheduled_at=started,
        started_at=started, completed_at=started + timedelta(seconds=95), issued_count=2,
    )
    await add_draw(db, title="Sorteio cancelado", status="cancelled", scheduled_at=now + timedelta(minutes=5))

    body = await _dashboard(client)

    assert body["next_draw"]["id"] == str(next_id)
    assert body["next_draw"]["title"] == "Sorteio da semana"
    assert body["next_draw"]["issued_numbers"] == 40
    assert body["last_draw"]["id"] == str(last_id)
    assert body["last_draw"]["duration_seconds"] == pytest.approx(95.0)
    assert body["lucky_numbers"]["issued"] == 42
    assert body["health"]["draws"] == "ok"


async def test_dashboard_overdue_draw(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    await add_draw(db, title="Sorteio atrasado", status="closed", scheduled_at=datetime.now(UTC) - timedelta(hours=1))

    body = await _dashboard(client)

    assert body["next_draw"]["status"] == "closed"
    assert body["health"]["draws"] == "attention"


async def test_dashboard_waiting_grants(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    await db.execute(
        "INSERT INTO payments (charge_id, subscription_ref, event_id, method, amount, status, paid_at)"
        " VALUES ('ch_1', 's1', $1, 'pix', 29.9, 'confirmed', now())",
        uuid.uuid4(),
    )
    await db.execute("INSERT INTO lucky_number_grants (charge_id, subscription_ref, quantity) VALUES ('ch_1', 's1', 2)")

    body = await _dashboard(client)

    assert body["lucky_numbers"]["grants_waiting"] == 1
    assert body["health"]["lucky_numbers"] == "attention"


async def test_dashboard_no_personal_data(client: httpx.AsyncClient) -> None:
    await send_webhooks(client, nix=2, redetv=2)

    response = await client.get("/v1/dashboard", headers=AUTH)

    for value in PERSONAL:
        assert value not in response.text, value
    assert "sub_dash_" not in response.text


async def test_dashboard_timeout(
    client: httpx.AsyncClient, db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gateway.dashboard.STATEMENT_TIMEOUT_MS", 200)

    # A lock held by another transaction makes the dashboard's first inbox query wait past its timeout.
    async with db.transaction():
        await db.execute("LOCK TABLE inbox IN ACCESS EXCLUSIVE MODE")
        response = await client.get("/v1/dashboard", headers=AUTH)

    assert response.status_code == 503
    assert response.json()["code"] == "dashboard_timeout"


async def test_dashboard_jaeger_link(settings: Settings) -> None:
    linked = settings.model_copy(update={"jaeger_ui_url": "http://127.0.0.1:16686"})
    async with gateway_client(linked) as client:
        body = await _dashboard(client)

    assert body["jaeger_url"] == "http://127.0.0.1:16686"


@pytest.mark.parametrize("url", ["javascript:alert(1)", "ftp://jaeger:16686", "http://"])
def test_jaeger_url_invalid(url: str) -> None:
    with pytest.raises(ValidationError):
        Settings(jaeger_ui_url=url)


async def test_page_served(client: httpx.AsyncClient) -> None:
    page = await client.get("/painel")
    script = await client.get("/painel/static/dashboard.js")
    style = await client.get("/painel/static/dashboard.css")

    assert page.status_code == 200
    assert 'lang="pt-BR"' in page.text
    assert "/painel/static/dashboard.js" in page.text
    assert script.headers["content-type"].startswith("text/javascript")
    assert style.headers["content-type"].startswith("text/css")


async def test_page_loads_nothing_external(client: httpx.AsyncClient) -> None:
    for path in ("/painel", "/painel/static/dashboard.js", "/painel/static/dashboard.css"):
        response = await client.get(path)

        assert "http://" not in response.text, path
        assert "https://" not in response.text, path


async def test_page_unknown_file(client: httpx.AsyncClient) -> None:
    response = await client.get("/painel/static/secrets.json")

    assert response.status_code == 404
