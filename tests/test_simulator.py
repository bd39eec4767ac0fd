"""The traffic simulator: signed, well-formed NIX webhooks with valid-looking fake customers."""

import asyncio
import json
import logging
import random
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from itertools import islice
from typing import Any

import pytest
import uvicorn
from standardwebhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from festival.services import free_port
from festival.settings import Settings
from producers.simulator import build_traffic, run_simulator
from producers.traffic import SubscriberPool, signed_headers
from producers.traffic_nix import NixTraffic
from tests.helpers import wait_until

SECRET = "whsec_" + "c2ltdWxhdG9yLXRlc3Qtc2VjcmV0LTI0Ynl0ZXM="
OTHER_SECRET = "whsec_" + "b3RoZXItc2VjcmV0LW5vdC10aGUtc2ltdWxhdG9ycw=="
NIX_TYPES = {"charge.created", "charge.paid", "charge.failed", "charge.refunded", "charge.chargeback"}


def cpf_is_valid(cpf: str) -> bool:
    """Check a CPF's two check digits (modulo 11, weights 10..2 and 11..2)."""
    if not re.fullmatch(r"\d{11}", cpf) or len(set(cpf)) == 1:
        return False
    digits = [int(character) for character in cpf]
    for position in (9, 10):
        total = sum(digit * weight for digit, weight in zip(digits[:position], range(position + 1, 1, -1)))
        check = (total * 10) % 11 % 10
        if digits[position] != check:
            return False
    return True


def sample(count: int = 600, seed: int = 7) -> list[Any]:
    return list(islice(build_traffic(random.Random(seed), {"nix"}), count))


def nix_events(deliveries: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(item.body) for item in deliveries if item.path == "/webhooks/nix"]


def pix_items(deliveries: list[Any]) -> list[dict[str, Any]]:
    return [pix for item in deliveries if item.path == "/webhooks/nix/pix" for pix in json.loads(item.body)["pix"]]


def test_cpf_check_rejects_wrong_digit() -> None:
    assert not cpf_is_valid("52998224726")


def test_cpf_check_accepts_known_cpf() -> None:
    assert cpf_is_valid("52998224725")


def test_signatures_verify() -> None:
    now = datetime.now(timezone.utc)
    failures = []
    for item in sample():
        headers = signed_headers(SECRET, item, now)
        try:
            Webhook(SECRET).verify(item.body, headers)
        except WebhookVerificationError as error:
            failures.append((item.webhook_id, str(error)))
    assert failures == []


def test_signatures_fail_with_other_secret() -> None:
    item = sample(1)[0]
    headers = signed_headers(SECRET, item, datetime.now(timezone.utc))
    with pytest.raises(WebhookVerificationError):
        Webhook(OTHER_SECRET).verify(item.body, headers)


def test_cpfs_have_valid_check_digits() -> None:
    cpfs = {event["data"]["customer"]["cpf"] for event in nix_events(sample())}
    invalid = sorted(cpf for cpf in cpfs if not cpf_is_valid(cpf))
    assert len(cpfs) > 20
    assert invalid == []


def test_customers_look_brazilian() -> None:
    customers = [event["data"]["customer"] for event in nix_events(sample())]
    assert all(re.fullmatch(r"\+55\d{10,11}", customer["phone"]) for customer in customers)
    assert all(re.fullmatch(r"[^@\s]+@example\.(com|org|net)", customer["email"]) for customer in customers)
    assert all(" " in customer["name"] for customer in customers)


def test_events_follow_nix_contract() -> None:
    # Chargebacks are rare in the traffic mix, so this sample is larger than the others.
    events = nix_events(sample(2000))
    assert {event["type"] for event in events} == NIX_TYPES
    assert {event["data"]["method"] for event in events} == {"pix", "card", "boleto"}
    assert {Decimal(event["data"]["amount"]) for event in events} == {Decimal("29.90"), Decimal("299.00")}
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", event["created_at"]) for event in events)


def test_pix_charges_announce_txid() -> None:
    created = [e for e in nix_events(sample()) if e["type"] == "charge.created" and e["data"]["method"] == "pix"]
    assert created
    assert all(re.fullmatch(r"[A-Za-z0-9]{26,35}", event["data"]["pix"]["txid"]) for event in created)


def test_pix_callbacks_follow_api_pix() -> None:
    items = pix_items(sample())
    assert items
    assert all(re.fullmatch(r"E\d{8}\d{12}[A-Z0-9]{11}", pix["endToEndId"]) for pix in items)
    assert all(pix["valor"] in ("29.90", "299.00") for pix in items)
    assert all(pix["horario"].endswith("Z") for pix in items)


def test_pix_callback_sometimes_precedes_charge() -> None:
    deliveries = sample()
    first_seen: dict[str, str] = {}
    for item in deliveries:
        body = json.loads(item.body)
        if item.path == "/webhooks/nix/pix":
            first_seen.setdefault(body["pix"][0]["txid"], "callback")
        elif body["type"] == "charge.created" and body["data"]["method"] == "pix":
            first_seen.setdefault(body["data"]["pix"]["txid"], "created")
    assert "callback" in first_seen.values()
    assert "created" in first_seen.values()


def test_redeliveries_repeat_id_and_body() -> None:
    deliveries = sample()
    originals = {item.webhook_id: item.body for item in deliveries if not item.redelivery}
    redeliveries = [item for item in deliveries if item.redelivery]
    assert redeliveries
    assert all(originals.get(item.webhook_id, item.body) == item.body for item in redeliveries)


def test_refund_goes_processing_then_final() -> None:
    rng = random.Random(3)
    traffic = NixTraffic(rng, SubscriberPool(rng), refund_rate=1.0)
    flow = [json.loads(item.body) for item in traffic.card_flow() + traffic.boleto_flow()]
    statuses = [event["data"]["refund"]["status"] for event in flow if event["type"] == "charge.refunded"]
    assert statuses[0] == "EM_PROCESSAMENTO"
    assert statuses[1] in ("DEVOLVIDO", "NAO_REALIZADO")


def test_boleto_paid_days_after_creation() -> None:
    rng = random.Random(5)
    flow = [json.loads(item.body) for item in NixTraffic(rng, SubscriberPool(rng)).boleto_flow()]
    created = datetime.fromisoformat(flow[0]["created_at"])
    paid = datetime.fromisoformat(flow[1]["data"]["paid_at"])
    assert (paid - created).days >= 1


@dataclass
class FakeGateway:
    """A gateway stand-in that verifies each webhook's signature with `secret`."""

    secret: str
    received: list[bytes] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)

    async def receive(self, request: Request) -> JSONResponse:
        body = await request.body()
        self.received.append(body)
        self.ids.append(request.headers["webhook-id"])
        try:
            Webhook(self.secret).verify(body, dict(request.headers))
        except WebhookVerificationError:
            return JSONResponse({"code": "invalid_signature", "detail": "Assinatura inválida."}, status_code=401)
        return JSONResponse({"status": "accepted"}, status_code=202)


@pytest.fixture
async def fake_gateway() -> AsyncIterator[tuple[str, FakeGateway]]:
    fake = FakeGateway(SECRET)
    routes = [Route(path, fake.receive, methods=["POST"]) for path in ("/webhooks/nix", "/webhooks/nix/pix")]
    app = Starlette(routes=routes)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(), name="fake-gateway")
    async with asyncio.timeout(10):
        while not server.started:
            await asyncio.sleep(0.02)
    yield f"http://127.0.0.1:{port}", fake
    server.should_exit = True
    await task


def simulator_settings(secret: str) -> Settings:
    return Settings(nix_webhook_secrets=[secret])  # type: ignore[list-item]


async def test_run_sends_count(fake_gateway: tuple[str, FakeGateway]) -> None:
    url, fake = fake_gateway
    code = await run_simulator(simulator_settings(SECRET), url, rate=500.0, count=40, seed=1)
    assert code == 0
    assert len(fake.received) == 40


async def test_run_summary_counts(fake_gateway: tuple[str, FakeGateway], caplog: pytest.LogCaptureFixture) -> None:
    url, fake = fake_gateway
    caplog.set_level(logging.INFO, logger="producers.simulator")
    await run_simulator(simulator_settings(SECRET), url, rate=500.0, count=60, seed=2)
    messages = [record.getMessage() for record in caplog.records]
    summary = [message for message in messages if message.startswith("simulator stopped")]
    duplicates = len(fake.ids) - len(set(fake.ids))
    expected = f"sent=60 accepted={60 - duplicates} duplicate={duplicates} rejected=0 failed=0 unreachable=0"
    assert summary == [f"simulator stopped {expected}"]


async def test_run_counts_rejections(fake_gateway: tuple[str, FakeGateway], caplog: pytest.LogCaptureFixture) -> None:
    url, fake = fake_gateway
    caplog.set_level(logging.INFO, logger="producers.simulator")
    await run_simulator(simulator_settings(OTHER_SECRET), url, rate=500.0, count=10, seed=3)
    assert any("rejected=10" in record.getMessage() for record in caplog.records)


async def test_run_all_rejected_fails(fake_gateway: tuple[str, FakeGateway], caplog: pytest.LogCaptureFixture) -> None:
    url, fake = fake_gateway
    code = await run_simulator(simulator_settings(OTHER_SECRET), url, rate=500.0, count=10, seed=3)
    errors = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    assert code == 1
    assert any("accepted no webhook" in message for message in errors)


async def test_run_unreachable_fails(caplog: pytest.LogCaptureFixture) -> None:
    # A port just freed by free_port has no listener, so every connection is refused.
    url = f"http://127.0.0.1:{free_port()}"
    code = await run_simulator(simulator_settings(SECRET), url, rate=500.0, count=5, seed=5)
    errors = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    assert code == 1
    assert any("did not reach the gateway" in message and url in message for message in errors)


async def test_run_stopped_reports_failures(caplog: pytest.LogCaptureFixture) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    task = asyncio.create_task(run_simulator(simulator_settings(SECRET), url, rate=50.0, count=None, seed=6))

    async def refused_once() -> bool:
        return any(record.getMessage().startswith("webhook unreachable") for record in caplog.records)

    await wait_until(refused_once, timeout=10.0)
    task.cancel()
    assert await task == 1


async def test_run_without_redetv_secret_warns(
    fake_gateway: tuple[str, FakeGateway], caplog: pytest.LogCaptureFixture
) -> None:
    url, fake = fake_gateway
    settings = Settings(nix_webhook_secrets=[SECRET], redetv_webhook_secrets=[])  # type: ignore[list-item]
    await run_simulator(settings, url, rate=500.0, count=1, seed=7)
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert any("FESTIVAL_REDETV_WEBHOOK_SECRETS is not set" in message for message in warnings)


async def test_run_logs_no_personal_data(fake_gateway: tuple[str, FakeGateway], caplog: pytest.LogCaptureFixture) -> None:
    url, fake = fake_gateway
    caplog.set_level(logging.DEBUG)
    # The wrong secret makes every delivery rejected, so the warning path is logged too.
    await run_simulator(simulator_settings(OTHER_SECRET), url, rate=500.0, count=30, seed=4)
    customers = [json.loads(body)["data"]["customer"] for body in fake.received if b'"customer"' in body]
    personal = {value for customer in customers for value in customer.values()}
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert customers
    assert [value for value in personal if value in logged] == []


async def test_run_without_secret_fails() -> None:
    assert await run_simulator(Settings(nix_webhook_secrets=[]), "http://127.0.0.1:9", rate=1.0, count=1) == 2


def test_payments_never_in_future() -> None:
    events = nix_events(sample())
    latest = datetime.now(UTC) + timedelta(seconds=5)
    paid = [datetime.fromisoformat(event["data"]["paid_at"]) for event in events if "paid_at" in event["data"]]
    assert paid
    assert max(paid) <= latest
