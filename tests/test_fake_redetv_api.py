"""The FAKE REDETV!PLUS entitlements API that `festival up --demo` runs for the demo."""

import httpx

from producers.fake_redetv_api import create_app

TOKEN = "demo-token"
BODY = {"active": True, "until": "2026-12-31T23:59:59-03:00", "reason": "payment confirmed"}


async def _client() -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(TOKEN)), base_url="http://127.0.0.1")


async def test_push_stored() -> None:
    async with await _client() as client:
        pushed = await client.put("/v1/entitlements/usr_1", json=BODY, headers={"authorization": f"Bearer {TOKEN}"})
        listed = await client.get("/v1/entitlements", headers={"authorization": f"Bearer {TOKEN}"})

    assert pushed.status_code == 204
    assert listed.json()["usr_1"]["active"] is True


async def test_wrong_token_rejected() -> None:
    async with await _client() as client:
        response = await client.put("/v1/entitlements/usr_1", json=BODY, headers={"authorization": "Bearer other"})

    assert response.status_code == 401


async def test_invalid_body_rejected() -> None:
    async with await _client() as client:
        response = await client.put(
            "/v1/entitlements/usr_1", json={"active": "maybe"}, headers={"authorization": f"Bearer {TOKEN}"}
        )

    assert response.status_code == 422
