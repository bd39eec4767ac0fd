"""Bad NIX deliveries: each gets a 4xx problem in Portuguese and leaves nothing stored."""

import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from festival.settings import Settings
from tests.gateway_support import encode, gateway_client, nix_event, pix_item, signed_headers

TABLES = ("inbox", "outbox", "deliveries", "customers", "charges", "pending_pix", "pix_received")
MAX_BODY = 2048


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    limited = settings.model_copy(update={"webhook_max_body_bytes": MAX_BODY})
    async with gateway_client(limited) as client:
        yield client


async def _stored_rows(settings: Settings) -> dict[str, int]:
    connection = await asyncpg.connect(settings.database_url)
    try:
        return {table: await connection.fetchval(f"SELECT count(*) FROM {table}") for table in TABLES}
    finally:
        await connection.close()


def _with_amount(amount: Any) -> bytes:
    return encode(nix_event("charge.paid", amount=amount))


def _with_time(created_at: Any) -> bytes:
    event = nix_event("charge.paid")
    event["created_at"] = created_at
    return encode(event)


def _oversized() -> bytes:
    return encode(nix_event("charge.paid", padding="x" * MAX_BODY))


# name: (body, content type, expected status, expected code, pointer of the field at fault)
CASES: dict[str, tuple[bytes, str, int, str, str | None]] = {
    "malformed_json": (b'{"id": "evt_1", "type": ', "application/json", 400, "malformed_json", None),
    "invalid_utf8": (b'{"id": "evt_\xff\xfe"}', "application/json", 400, "invalid_encoding", None),
    "wrong_content_type": (encode(nix_event("charge.paid")), "text/plain", 415, "unsupported_media_type", None),
    "form_content_type": (b"id=evt_1", "application/x-www-form-urlencoded", 415, "unsupported_media_type", None),
    "latin1_charset": (encode(nix_event("charge.paid")), "application/json; charset=latin-1", 415, "unsupported_media_type", None),
    "body_over_limit": (_oversized(), "application/json", 413, "body_too_large", None),
    "amount_comma": (_with_amount("10,00"), "application/json", 422, "validation_failed", "#/data/amount"),
    "amount_exponent": (_with_amount("1e1"), "application/json", 422, "validation_failed", "#/data/amount"),
    "amount_negative": (_with_amount("-1.00"), "application/json", 422, "validation_failed", "#/data/amount"),
    "amount_three_decimals": (_with_amount("1.000"), "application/json", 422, "validation_failed", "#/data/amount"),
    "amount_zero": (_with_amount("0.00"), "application/json", 422, "validation_failed", "#/data/amount"),
    "amount_number": (_with_amount(10.5), "application/json", 422, "validation_failed", "#/data/amount"),
    "time_naive": (_with_time("2025-03-01T12:00:00"), "application/json", 422, "validation_failed", "#/created_at"),
    "time_unix": (_with_time("1740830400"), "application/json", 422, "validation_failed", "#/created_at"),
    "unknown_type": (encode({**nix_event("charge.paid"), "type": "charge.lost"}), "application/json", 422, "validation_failed", "#/type"),
    "paid_without_paid_at": (encode(nix_event("charge.paid", paid_at=None)), "application/json", 422, "validation_failed", "#"),
    "json_array": (b"[]", "application/json", 422, "validation_failed", "#"),
    "nul_in_name": (
        encode(nix_event("charge.paid", customer={"name": "Ana\x00"})), "application/json", 422, "validation_failed",
        "#/data/customer/name",
    ),
    "nul_in_failure_reason": (
        encode(nix_event("charge.failed", failure_reason="card\x00")), "application/json", 422, "validation_failed",
        "#/data/failure_reason",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_rejection_answers_problem(client: httpx.AsyncClient, settings: Settings, case: str) -> None:
    body, content_type, status, code, pointer = CASES[case]

    response = await client.post("/webhooks/nix", content=body, headers=signed_headers(body, content_type=content_type))

    problem = response.json()
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert problem["code"] == code
    assert problem["status"] == status
    assert problem["type"].endswith(code)
    assert problem["title"]
    assert problem["detail"]
    if pointer is not None:
        assert pointer in [error["pointer"] for error in problem["errors"]]
    assert set((await _stored_rows(settings)).values()) == {0}


@pytest.mark.parametrize("case", ["amount_comma", "time_naive"])
async def test_rejection_detail_portuguese(client: httpx.AsyncClient, case: str) -> None:
    body, content_type, *_ = CASES[case]

    response = await client.post("/webhooks/nix", content=body, headers=signed_headers(body, content_type=content_type))

    problem = response.json()
    assert problem["detail"].startswith("Um ou mais campos")
    assert all(" " in error["detail"] for error in problem["errors"])


async def test_rejection_echoes_no_personal_data(client: httpx.AsyncClient) -> None:
    event = nix_event("charge.paid", amount="10,00")
    event["data"]["customer"]["cpf"] = 12345678909
    body = encode(event)

    response = await client.post("/webhooks/nix", content=body, headers=signed_headers(body))

    assert response.status_code == 422
    assert "12345678909" not in response.text
    assert "Conceição" not in response.text


async def test_rejection_streamed_body_over_limit(client: httpx.AsyncClient, settings: Settings) -> None:
    body = _oversized()
    headers = signed_headers(body)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 512):
            yield body[start : start + 512]

    response = await client.post("/webhooks/nix", content=chunks(), headers=headers)

    assert response.status_code == 413
    assert set((await _stored_rows(settings)).values()) == {0}


async def test_rejection_body_before_signature(client: httpx.AsyncClient) -> None:
    response = await client.post("/webhooks/nix", content=_oversized(), headers={"content-type": "application/json"})

    assert response.status_code == 413


async def test_rejection_content_type_before_signature(client: httpx.AsyncClient) -> None:
    response = await client.post("/webhooks/nix", content=b"{}", headers={"content-type": "text/plain"})

    assert response.status_code == 415


async def test_rejection_signature_before_utf8(client: httpx.AsyncClient) -> None:
    response = await client.post("/webhooks/nix", content=b"\xff", headers={"content-type": "application/json"})

    assert response.status_code == 401


@pytest.mark.parametrize(
    "valor", ["10,00", "1e1", "-1.00", "1.000"], ids=["comma", "exponent", "negative", "three_decimals"]
)
async def test_rejection_pix_amount(client: httpx.AsyncClient, settings: Settings, valor: str) -> None:
    body = encode({"pix": [pix_item(valor=valor)]})

    response = await client.post("/webhooks/nix/pix", content=body, headers=signed_headers(body))

    assert response.status_code == 422
    assert "#/pix/0/valor" in [error["pointer"] for error in response.json()["errors"]]
    assert set((await _stored_rows(settings)).values()) == {0}


async def test_rejection_pix_naive_time(client: httpx.AsyncClient) -> None:
    item = pix_item()
    item["horario"] = "2025-03-01T12:00:00"
    body = encode({"pix": [item]})

    response = await client.post("/webhooks/nix/pix", content=body, headers=signed_headers(body))

    assert response.status_code == 422
    assert response.json()["errors"][0]["code"] == "timezone_aware"


async def test_rejection_pix_empty_list(client: httpx.AsyncClient) -> None:
    body = encode({"pix": []})

    response = await client.post("/webhooks/nix/pix", content=body, headers=signed_headers(body))

    assert response.status_code == 422


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-03:00"])
async def test_time_without_utc_value(when: str, settings: Settings, pool: asyncpg.Pool) -> None:
    body = nix_event("charge.paid")
    body["created_at"] = when

    async with gateway_client(settings) as client:
        raw = json.dumps(body).encode()
        response = await client.post("/webhooks/nix", content=raw, headers=signed_headers(raw))

    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert await pool.fetchval("SELECT count(*) FROM inbox") == 0
