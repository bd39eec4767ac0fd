"""NIX webhook ingest: translation, storage in one transaction, redeliveries and PIX matching."""

import asyncio
import json
from decimal import Decimal
from typing import Any

import asyncpg
import httpx

from festival.settings import Settings
from tests.gateway_support import (
    END_TO_END_ID,
    TXID,
    encode,
    nix_event,
    pix_item,
    post_signed,
    signed_headers,
)


async def _outbox(db: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await db.fetch("SELECT topic, envelope FROM outbox ORDER BY position")
    return [{"topic": row["topic"], **row["envelope"]} for row in rows]


async def test_charge_paid_confirms_payment(client: httpx.AsyncClient, db: asyncpg.Connection, settings: Settings) -> None:
    response = await post_signed(client, "/webhooks/nix", encode(nix_event("charge.paid")))

    events = await _outbox(db)
    assert response.status_code == 202
    assert response.json()["event_ids"] == [events[0]["id"]]
    assert events[0]["topic"] == f"{settings.topic_root}/payments/confirmed"
    assert events[0]["type"] == "festival.payment.confirmed.v1"
    assert events[0]["source"] == "/partners/nix"
    assert events[0]["subject"] == "ch_1"
    assert events[0]["data"] == {
        "charge_id": "ch_1",
        "subscription_ref": "sub_1",
        "amount": "29.90",
        "method": "card",
        "paid_at": "2025-03-01T12:00:00-03:00",
        "pix_end_to_end_id": None,
    }


async def test_charge_paid_writes_one_transaction(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    event = nix_event("charge.paid")
    body = encode(event)

    await client.post("/webhooks/nix", content=body, headers=signed_headers(body, webhook_id="msg_paid"))

    inbox = await db.fetchrow("SELECT * FROM inbox")
    charge = await db.fetchrow("SELECT * FROM charges")
    customer = await db.fetchrow("SELECT * FROM customers")
    delivery = await db.fetchrow("SELECT consumer, status FROM deliveries")
    assert inbox["delivery_id"] == "msg_paid"
    assert inbox["partner_event_id"] == event["id"]
    assert bytes(inbox["body"]) == body
    assert len(inbox["event_ids"]) == 1
    assert (charge["charge_id"], charge["amount"], charge["method"]) == ("ch_1", Decimal("29.90"), "card")
    assert customer["cpf"] == "123.456.789-09"
    assert dict(delivery) == {"consumer": "payments", "status": "pending"}


async def test_events_carry_no_personal_data(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    for event_type in ("charge.paid", "charge.failed", "charge.refunded", "charge.chargeback"):
        await post_signed(client, "/webhooks/nix", encode(nix_event(event_type, charge_id=f"ch_{event_type}")))

    text = json.dumps(await _outbox(db), ensure_ascii=False)
    for value in ("123.456.789-09", "conceicao@example.com", "Conceição", "+5511987654321"):
        assert value not in text


async def test_charge_created_emits_nothing(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    response = await post_signed(client, "/webhooks/nix", encode(nix_event("charge.created")))

    assert response.status_code == 202
    assert response.json()["event_ids"] == []
    assert await db.fetchval("SELECT count(*) FROM outbox") == 0
    assert await db.fetchval("SELECT count(*) FROM charges") == 1


async def test_charge_failed_event(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    await post_signed(client, "/webhooks/nix", encode(nix_event("charge.failed")))

    [event] = await _outbox(db)
    assert event["type"] == "festival.payment.failed.v1"
    assert event["data"]["reason"] == "insufficient_funds"
    assert event["data"]["failed_at"] == "2025-03-01T12:00:05-03:00"


async def test_charge_refunded_event(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    refund = {"id": "rf_9", "amount": "5.00", "status": "EM_PROCESSAMENTO"}
    await post_signed(client, "/webhooks/nix", encode(nix_event("charge.refunded", refund=refund)))

    [event] = await _outbox(db)
    assert event["type"] == "festival.payment.refunded.v1"
    assert event["data"]["kind"] == "refund"
    assert event["data"]["refund_id"] == "rf_9"
    assert event["data"]["amount"] == "5.00"
    assert event["data"]["status"] == "EM_PROCESSAMENTO"


async def test_charge_chargeback_event(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    await post_signed(client, "/webhooks/nix", encode(nix_event("charge.chargeback")))

    [event] = await _outbox(db)
    assert event["data"]["kind"] == "chargeback"
    assert event["data"]["status"] == "CHARGEBACK"
    assert event["data"]["amount"] == "29.90"
    assert event["data"]["refund_id"] == "chargeback-ch_1"


async def test_unknown_fields_accepted(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    event = nix_event("charge.paid", installments=3)
    event["livemode"] = True
    body = encode(event)

    response = await post_signed(client, "/webhooks/nix", body)

    assert response.status_code == 202
    assert b'"installments": 3' in bytes(await db.fetchval("SELECT body FROM inbox"))


async def test_redelivery_same_webhook_id(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    body = encode(nix_event("charge.paid"))
    headers = signed_headers(body, webhook_id="msg_again")

    first = await client.post("/webhooks/nix", content=body, headers=headers)
    second = await client.post("/webhooks/nix", content=body, headers=headers)

    assert first.status_code == 202
    assert second.status_code == 200
    assert second.json()["event_ids"] == first.json()["event_ids"]
    assert await db.fetchval("SELECT count(*) FROM outbox") == 1


async def test_redelivery_same_event_new_webhook_id(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    body = encode(nix_event("charge.paid"))

    first = await post_signed(client, "/webhooks/nix", body)
    second = await post_signed(client, "/webhooks/nix", body)

    assert second.status_code == 200
    assert second.json()["event_ids"] == first.json()["event_ids"]
    assert await db.fetchval("SELECT count(*) FROM inbox") == 1
    assert await db.fetchval("SELECT count(*) FROM outbox") == 1


async def test_redelivery_concurrent(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    body = encode(nix_event("charge.paid"))
    headers = signed_headers(body, webhook_id="msg_concurrent")

    responses = await asyncio.gather(*(client.post("/webhooks/nix", content=body, headers=headers) for _ in range(3)))

    assert sorted(response.status_code for response in responses) == [200, 200, 202]
    assert await db.fetchval("SELECT count(*) FROM inbox") == 1
    assert await db.fetchval("SELECT count(*) FROM outbox") == 1
    assert await db.fetchval("SELECT count(*) FROM deliveries") == 1


async def test_later_event_records_unseen_charge(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    await post_signed(client, "/webhooks/nix", encode(nix_event("charge.failed", charge_id="ch_new", method="boleto")))

    charge = await db.fetchrow("SELECT charge_id, method, amount FROM charges")
    assert dict(charge) == {"charge_id": "ch_new", "method": "boleto", "amount": Decimal("29.90")}


def _pix_charge(event_type: str) -> dict[str, Any]:
    return nix_event(event_type, method="pix", pix={"txid": TXID})


async def test_pix_before_charge_waits(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    response = await post_signed(client, "/webhooks/nix/pix", encode({"pix": [pix_item()]}))

    assert response.status_code == 202
    assert response.json()["event_ids"] == []
    assert await db.fetchval("SELECT count(*) FROM outbox") == 0
    assert await db.fetchval("SELECT txid FROM pending_pix") == TXID


async def test_pix_applied_when_charge_arrives(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    await post_signed(client, "/webhooks/nix/pix", encode({"pix": [pix_item()]}))

    response = await post_signed(client, "/webhooks/nix", encode(_pix_charge("charge.created")))

    [event] = await _outbox(db)
    assert response.status_code == 202
    assert response.json()["event_ids"] == [event["id"]]
    assert event["type"] == "festival.payment.confirmed.v1"
    assert event["data"]["method"] == "pix"
    assert event["data"]["pix_end_to_end_id"] == END_TO_END_ID
    assert event["data"]["paid_at"] == "2025-03-01T12:00:01.123000-03:00"
    assert await db.fetchval("SELECT count(*) FROM pending_pix") == 0
    stored = await db.fetchval("SELECT event_ids FROM inbox WHERE endpoint = '/webhooks/nix'")
    assert [str(event_id) for event_id in stored] == [event["id"]]


async def test_pix_after_charge_confirms(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    await post_signed(client, "/webhooks/nix", encode(_pix_charge("charge.created")))

    response = await post_signed(client, "/webhooks/nix/pix", encode({"pix": [pix_item()]}))

    [event] = await _outbox(db)
    assert response.status_code == 202
    assert event["subject"] == "ch_1"
    assert event["data"]["amount"] == "29.90"
    assert await db.fetchval("SELECT count(*) FROM pending_pix") == 0


async def test_pix_several_in_one_callback(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    await post_signed(client, "/webhooks/nix", encode(_pix_charge("charge.created")))
    other = pix_item(end_to_end_id="E" + "9" * 31, txid="othertxid000000000000000000001")

    response = await post_signed(client, "/webhooks/nix/pix", encode({"pix": [pix_item(), other]}))

    assert response.status_code == 202
    assert len(response.json()["event_ids"]) == 1
    assert await db.fetchval("SELECT count(*) FROM pending_pix") == 1


async def test_pix_seen_again_changes_nothing(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    await post_signed(client, "/webhooks/nix", encode(_pix_charge("charge.created")))
    await post_signed(client, "/webhooks/nix/pix", encode({"pix": [pix_item()]}))

    response = await post_signed(client, "/webhooks/nix/pix", encode({"pix": [pix_item()]}))

    assert response.status_code == 200
    assert await db.fetchval("SELECT count(*) FROM outbox") == 1
    assert await db.fetchval("SELECT count(*) FROM inbox WHERE endpoint = '/webhooks/nix/pix'") == 1


async def test_pix_concurrent_with_charge(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    for attempt in range(5):
        txid = f"race{attempt}" + "0" * 20
        charge = nix_event("charge.created", charge_id=f"ch_race{attempt}", method="pix", pix={"txid": txid})
        pix = pix_item(end_to_end_id=f"E{attempt}" + "0" * 30, txid=txid)

        await asyncio.gather(
            post_signed(client, "/webhooks/nix", encode(charge)),
            post_signed(client, "/webhooks/nix/pix", encode({"pix": [pix]})),
        )

    assert await db.fetchval("SELECT count(*) FROM outbox") == 5
    assert await db.fetchval("SELECT count(*) FROM pending_pix") == 0


async def test_charge_paid_and_pix_both_confirm(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    await post_signed(client, "/webhooks/nix", encode(_pix_charge("charge.created")))
    await post_signed(client, "/webhooks/nix", encode(_pix_charge("charge.paid")))

    await post_signed(client, "/webhooks/nix/pix", encode({"pix": [pix_item()]}))

    events = await _outbox(db)
    assert [event["type"] for event in events] == ["festival.payment.confirmed.v1"] * 2
    assert {event["subject"] for event in events} == {"ch_1"}


async def test_customer_updated_by_later_event(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    await post_signed(client, "/webhooks/nix", encode(nix_event("charge.created")))
    changed = {"name": "Conceição Araújo", "email": "nova@example.com"}

    await post_signed(client, "/webhooks/nix", encode(nix_event("charge.paid", customer=changed)))

    customer = await db.fetchrow("SELECT email, cpf FROM customers WHERE subscription_ref = 'sub_1'")
    assert customer["email"] == "nova@example.com"
    assert customer["cpf"] == "123.456.789-09"
