"""Draws admin API: creation, bad inputs in Portuguese, cancel and trigger rules, public view."""

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.conftest import OPERATOR_TOKEN

AUTH = {"authorization": f"Bearer {OPERATOR_TOKEN}"}


def new_draw(**overrides: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    body = {
        "title": "Sorteio de março",
        "prizes": ["Carro 0 km", "Moto"],
        "scheduled_at": (now + timedelta(hours=2)).isoformat(),
        "cutoff_at": (now + timedelta(hours=1)).isoformat(),
        "pace_ms": 0,
    }
    return {**body, **overrides}


async def create(client: httpx.AsyncClient, **overrides: Any) -> dict[str, Any]:
    response = await client.post("/v1/draws", json=new_draw(**overrides), headers=AUTH)
    assert response.status_code == 201, response.text
    document: dict[str, Any] = response.json()
    return document


async def test_create_commits(client: httpx.AsyncClient) -> None:
    draw = await create(client)
    assert len(draw["commitment"]) == 64


async def test_create_hides_seed(client: httpx.AsyncClient) -> None:
    draw = await create(client)
    assert draw["seed"] is None


async def test_create_status(client: httpx.AsyncClient) -> None:
    draw = await create(client)
    assert draw["status"] == "scheduled"


async def test_create_requires_token(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/draws", json=new_draw())
    assert response.status_code == 401


async def test_create_cutoff_after_draw(client: httpx.AsyncClient) -> None:
    now = datetime.now(UTC)
    body = new_draw(cutoff_at=(now + timedelta(hours=3)).isoformat())
    response = await client.post("/v1/draws", json=body, headers=AUTH)
    assert response.json()["errors"][0]["code"] == "cutoff_after_draw"


async def test_create_cutoff_detail_portuguese(client: httpx.AsyncClient) -> None:
    now = datetime.now(UTC)
    body = new_draw(cutoff_at=(now + timedelta(hours=3)).isoformat())
    response = await client.post("/v1/draws", json=body, headers=AUTH)
    assert "encerramento" in response.json()["detail"]


async def test_create_empty_prizes(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/draws", json=new_draw(prizes=[]), headers=AUTH)
    assert response.status_code == 422


async def test_create_blank_prize(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/draws", json=new_draw(prizes=["Carro", "  "]), headers=AUTH)
    assert response.json()["errors"][0]["pointer"] == "#/prizes/1"


async def test_create_past_time(client: httpx.AsyncClient) -> None:
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    response = await client.post("/v1/draws", json=new_draw(scheduled_at=past, cutoff_at=past), headers=AUTH)
    assert response.json()["errors"][0]["code"] == "scheduled_in_past"


async def test_create_naive_time(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/draws", json=new_draw(scheduled_at="2030-01-01T12:00:00"), headers=AUTH)
    assert response.status_code == 422


@pytest.mark.parametrize("field", ["scheduled_at", "cutoff_at"])
async def test_create_time_past_utc_range(client: httpx.AsyncClient, field: str) -> None:
    body = new_draw()
    body[field] = "9999-12-31T23:59:59-03:00" if field == "scheduled_at" else "0001-01-01T00:00:00+05:00"
    response = await client.post("/v1/draws", json=body, headers=AUTH)
    assert response.status_code == 422
    assert response.json()["errors"][0]["pointer"] == f"#/body/{field}"


@pytest.mark.parametrize("overrides", [{"title": "Sorteio\x00"}, {"prizes": ["Carro\x00"]}], ids=["title", "prize"])
async def test_create_nul_character(client: httpx.AsyncClient, overrides: dict[str, Any]) -> None:
    response = await client.post("/v1/draws", json=new_draw(**overrides), headers=AUTH)
    assert response.status_code == 422


async def test_create_unknown_mode(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/draws", json=new_draw(mode="bingo"), headers=AUTH)
    assert response.status_code == 422


async def test_get_unknown(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/draws/00000000-0000-4000-8000-000000000000")
    assert response.status_code == 404


async def test_get_unknown_detail(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/draws/00000000-0000-4000-8000-000000000000")
    assert response.json()["detail"].startswith("Não existe sorteio")


async def test_get_invalid_id(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/draws/abc")
    assert response.status_code == 422


async def test_trigger_unknown(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/draws/00000000-0000-4000-8000-000000000000/trigger", headers=AUTH)
    assert response.status_code == 404


async def test_list(client: httpx.AsyncClient) -> None:
    draw = await create(client)
    response = await client.get("/v1/draws", headers=AUTH)
    assert [item["id"] for item in response.json()] == [draw["id"]]


async def test_cancel(client: httpx.AsyncClient) -> None:
    draw = await create(client)
    response = await client.post(f"/v1/draws/{draw['id']}/cancel", headers=AUTH)
    assert response.json()["status"] == "cancelled"


async def test_trigger_cancelled(client: httpx.AsyncClient) -> None:
    draw = await create(client)
    await client.post(f"/v1/draws/{draw['id']}/cancel", headers=AUTH)
    response = await client.post(f"/v1/draws/{draw['id']}/trigger", headers=AUTH)
    assert response.status_code == 409


async def test_cancel_triggered(client: httpx.AsyncClient) -> None:
    draw = await create(client)
    await client.post(f"/v1/draws/{draw['id']}/trigger", headers=AUTH)
    response = await client.post(f"/v1/draws/{draw['id']}/cancel", headers=AUTH)
    assert response.status_code == 409


async def test_trigger_twice(client: httpx.AsyncClient) -> None:
    draw = await create(client)
    await client.post(f"/v1/draws/{draw['id']}/trigger", headers=AUTH)
    response = await client.post(f"/v1/draws/{draw['id']}/trigger", headers=AUTH)
    assert response.json()["triggered"] is False


async def test_loteria_without_results(client: httpx.AsyncClient) -> None:
    draw = await create(client, mode="loteria_federal")
    response = await client.post(f"/v1/draws/{draw['id']}/trigger", headers=AUTH)
    assert response.json()["code"] == "loteria_results_missing"


async def test_loteria_bad_results(client: httpx.AsyncClient) -> None:
    draw = await create(client, mode="loteria_federal")
    body = {"prizes": ["50366", "33514", "455"]}
    response = await client.put(f"/v1/draws/{draw['id']}/loteria-federal", json=body, headers=AUTH)
    assert response.status_code == 422


async def test_loteria_contest_nul_character(client: httpx.AsyncClient) -> None:
    draw = await create(client, mode="loteria_federal")
    body = {"prizes": ["50366", "12345", "00001", "99999", "54321"], "contest": "5\x00"}
    response = await client.put(f"/v1/draws/{draw['id']}/loteria-federal", json=body, headers=AUTH)
    assert response.status_code == 422


async def test_loteria_on_random_draw(client: httpx.AsyncClient) -> None:
    draw = await create(client)
    body = {"prizes": ["50366", "33514", "45504", "94365", "51105"]}
    response = await client.put(f"/v1/draws/{draw['id']}/loteria-federal", json=body, headers=AUTH)
    assert response.status_code == 409


async def test_loteria_results_stored(client: httpx.AsyncClient) -> None:
    draw = await create(client, mode="loteria_federal")
    body = {"prizes": ["50.366", "33514", "45504", "94365", "51105"], "contest": "5950"}
    response = await client.put(f"/v1/draws/{draw['id']}/loteria-federal", json=body, headers=AUTH)
    assert response.json()["loteria_federal"]["prizes"][0] == "50366"


async def test_audit_before_cutoff(client: httpx.AsyncClient) -> None:
    draw = await create(client)
    response = await client.get(f"/v1/draws/{draw['id']}/audit")
    assert response.json()["snapshot"] is None


async def test_certificate_pdf(client: httpx.AsyncClient) -> None:
    draw = await create(client)
    response = await client.get(f"/v1/draws/{draw['id']}/certificate.pdf")
    assert response.content.startswith(b"%PDF")
