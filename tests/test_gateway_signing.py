"""Signature checks of the NIX webhook, signed with the reference `standardwebhooks` package."""

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from festival.settings import Settings
from gateway.problems import ProblemError
from gateway.signing import WebhookVerifier
from tests.conftest import WEBHOOK_SECRET
from tests.gateway_support import SECOND_SECRET, gateway_client, post_signed, signed_headers

# Bodies written by hand so that the bytes signed are not what json.dumps would produce.
ODD_BODIES = {
    "cedilla": '{"id":"evt_c","type":"charge.created","created_at":"2025-03-01T12:00:00-03:00","data":{"charge_id":"ch_c","subscription_ref":"sub_c","amount":"29.90","method":"card","customer":{"name":"Conceição"}}}',
    "emoji": '{"id":"evt_e","type":"charge.created","created_at":"2025-03-01T12:00:00-03:00","data":{"charge_id":"ch_e","subscription_ref":"sub_e","amount":"29.90","method":"card","customer":{"name":"Ana 🎉"}}}',
    "escaped_slashes": '{"id":"evt_s","type":"charge.created","created_at":"2025-03-01T12:00:00-03:00","data":{"charge_id":"ch\\/s","subscription_ref":"sub\\/s","amount":"29.90","method":"card","note":"https:\\/\\/nix.example\\/x"}}',
    "odd_whitespace": '\r\n {\t"id" :  "evt_w",\n"type":"charge.created" ,"created_at":"2025-03-01T12:00:00-03:00",\r\n"data":{ "charge_id":"ch_w","subscription_ref":"sub_w","amount":"29.90","method":"card"}\t}\n\n',
}


def _charge_created() -> bytes:
    return ODD_BODIES["cedilla"].encode()


@pytest.mark.parametrize("name", sorted(ODD_BODIES))
async def test_signature_odd_body_verifies(settings: Settings, name: str) -> None:
    body = ODD_BODIES[name].encode()

    async with gateway_client(settings) as client:
        response = await post_signed(client, "/webhooks/nix", body)

    assert response.status_code == 202, response.text


async def test_signature_raw_body_stored(settings: Settings) -> None:
    body = ODD_BODIES["escaped_slashes"].encode()

    async with gateway_client(settings) as client:
        await post_signed(client, "/webhooks/nix", body)

    connection = await asyncpg.connect(settings.database_url)
    try:
        stored = await connection.fetchval("SELECT body FROM inbox")
        charge_id = await connection.fetchval("SELECT charge_id FROM charges")
    finally:
        await connection.close()
    assert stored == body
    assert charge_id == "ch/s"


async def test_signature_tampered_byte(settings: Settings) -> None:
    body = _charge_created()
    headers = signed_headers(body)
    tampered = body.replace(b"29.90", b"29.91")

    async with gateway_client(settings) as client:
        response = await client.post("/webhooks/nix", content=tampered, headers=headers)

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_signature"


@pytest.mark.parametrize("skew", [timedelta(minutes=-6), timedelta(minutes=6)], ids=["stale", "future"])
async def test_signature_timestamp_outside_window(settings: Settings, skew: timedelta) -> None:
    body = _charge_created()

    async with gateway_client(settings) as client:
        response = await post_signed(client, "/webhooks/nix", body, timestamp=datetime.now(UTC) + skew)

    assert response.status_code == 401
    assert response.json()["code"] == "timestamp_out_of_window"


async def test_signature_timestamp_inside_window(settings: Settings) -> None:
    body = _charge_created()

    async with gateway_client(settings) as client:
        response = await post_signed(client, "/webhooks/nix", body, timestamp=datetime.now(UTC) - timedelta(minutes=4))

    assert response.status_code == 202


async def test_signature_second_secret_verifies(settings: Settings) -> None:
    rotating = settings.model_copy(update={"nix_webhook_secrets": settings.nix_webhook_secrets + [SECOND_SECRET]})
    body = _charge_created()

    async with gateway_client(rotating) as client:
        response = await post_signed(client, "/webhooks/nix", body, secret=SECOND_SECRET)

    assert response.status_code == 202


async def test_signature_one_of_several_matches(settings: Settings) -> None:
    body = _charge_created()
    headers = signed_headers(body, secret=SECOND_SECRET)
    valid = signed_headers(body, webhook_id=headers["webhook-id"])["webhook-signature"]
    headers["webhook-signature"] = f"{headers['webhook-signature']} v1a,ignored {valid}"

    async with gateway_client(settings) as client:
        response = await client.post("/webhooks/nix", content=body, headers=headers)

    assert response.status_code == 202


async def test_signature_unknown_secret(settings: Settings) -> None:
    body = _charge_created()

    async with gateway_client(settings) as client:
        response = await post_signed(client, "/webhooks/nix", body, secret=SECOND_SECRET)

    assert response.status_code == 401


@pytest.mark.parametrize("header", ["webhook-id", "webhook-timestamp", "webhook-signature"])
async def test_signature_header_missing(settings: Settings, header: str) -> None:
    body = _charge_created()
    headers = signed_headers(body)
    del headers[header]

    async with gateway_client(settings) as client:
        response = await client.post("/webhooks/nix", content=body, headers=headers)

    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "signature_missing"


async def test_signature_rejection_stores_nothing(settings: Settings) -> None:
    body = _charge_created()

    async with gateway_client(settings) as client:
        await post_signed(client, "/webhooks/nix", body, secret=SECOND_SECRET)

    connection = await asyncpg.connect(settings.database_url)
    try:
        inbox = await connection.fetchval("SELECT count(*) FROM inbox")
    finally:
        await connection.close()
    assert inbox == 0


def test_verifier_non_numeric_timestamp() -> None:
    verifier = WebhookVerifier("nix", [WEBHOOK_SECRET], 300)
    body = b"{}"
    headers = signed_headers(body)
    headers["webhook-timestamp"] = "1.7e9"

    with pytest.raises(ProblemError) as raised:
        verifier.verify(headers, body)

    assert raised.value.code == "invalid_signature_headers"


def test_verifier_agrees_with_reference() -> None:
    verifier = WebhookVerifier("nix", [WEBHOOK_SECRET], 300)
    body = "{\"nome\": \"João\"}".encode()
    headers = signed_headers(body, webhook_id="msg_fixed")

    verified = verifier.verify(headers, body)

    assert verified.webhook_id == "msg_fixed"


def test_verifier_repr_hides_secrets() -> None:
    verifier = WebhookVerifier("nix", [WEBHOOK_SECRET], 300)

    assert WEBHOOK_SECRET.removeprefix("whsec_") not in repr(verifier)
