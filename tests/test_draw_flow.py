"""Draws end to end: API, relay, draws consumer and Mosquitto, with customers holding personal data."""

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from broker.connection import aiomqtt_client
from consumers import draw_admin
from festival.domain.draw_audit import verify_audit
from festival.settings import Settings
from producers import draw_jobs
from schemas.draws import DrawAudit
from schemas.live import DrawState
from tests.conftest import OPERATOR_TOKEN
from tests.gateway_support import gateway_client
from tests.helpers import wait_until
from tests.pipeline import running_consumer, running_relay

AUTH = {"authorization": f"Bearer {OPERATOR_TOKEN}"}
LOTERIA = ["50366", "33514", "45504", "94365", "51105"]
# Each customer's CPF (formatted or digits only), e-mail, phone and surname, as `add_entries` stores them.
PERSONAL = re.compile(r"123\.?456\.?78\d-?09|@example\.com|\+5511987654|Araújo|Lima")


class Observer:
    """Collects every message under `draws/#` of the test's topic tree."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []

    def payloads(self, suffix: str) -> list[dict[str, Any]]:
        return [json.loads(body) for topic, body in self.messages if topic.endswith(suffix)]


@pytest.fixture
async def stack(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[tuple[httpx.AsyncClient, Observer]]:
    observer = Observer()
    async with aiomqtt_client(settings) as mqtt:
        await mqtt.subscribe(f"{settings.topic_root}/draws/#", qos=1)

        async def collect() -> None:
            async for message in mqtt.messages:
                observer.messages.append((str(message.topic), bytes(message.payload)))  # type: ignore[arg-type]

        task = asyncio.create_task(collect())
        async with gateway_client(settings) as client, running_relay(settings, pool), running_consumer("draws", settings, pool):
            yield client, observer
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def create(client: httpx.AsyncClient, **overrides: Any) -> str:
    now = datetime.now(UTC)
    body = {
        "title": "Sorteio de teste", "prizes": ["Carro", "Moto", "TV"], "pace_ms": 0,
        "scheduled_at": (now + timedelta(hours=2)).isoformat(), "cutoff_at": (now + timedelta(hours=1)).isoformat(),
        **overrides,
    }
    response = await client.post("/v1/draws", json=body, headers=AUTH)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def add_entries(pool: asyncpg.Pool, draw_id: str, numbers: list[int]) -> None:
    async with pool.acquire() as connection, connection.transaction():
        for index, number in enumerate(numbers):
            ref = f"sub_{index}"
            await connection.execute(
                "INSERT INTO customers (subscription_ref, name, email, cpf, phone) VALUES ($1, $2, $3, $4, $5)"
                " ON CONFLICT DO NOTHING",
                ref, f"Conceição {index} Araújo Lima", f"pessoa{index}@example.com", f"123.456.78{index % 10}-09", f"+55119876543{index:02d}",
            )
            await connection.execute(
                "INSERT INTO lucky_numbers (draw_id, number, subscription_ref, charge_id) VALUES ($1, $2, $3, $4)",
                uuid.UUID(draw_id), number, ref, f"ch_{index}",
            )


async def run_to_completion(client: httpx.AsyncClient, draw_id: str) -> dict[str, Any]:
    response = await client.post(f"/v1/draws/{draw_id}/trigger", headers=AUTH)
    assert response.status_code == 202, response.text

    async def completed() -> bool:
        return (await client.get(f"/v1/draws/{draw_id}")).json()["status"] == "completed"

    await wait_until(completed, timeout=20)
    document: dict[str, Any] = (await client.get(f"/v1/draws/{draw_id}")).json()
    return document


async def late_state(settings: Settings, draw_id: str) -> DrawState:
    async with aiomqtt_client(settings) as late:
        await late.subscribe(f"{settings.topic_root}/draws/{draw_id}/state", qos=1)
        async with asyncio.timeout(5):
            message = await anext(late.messages)
    return DrawState.model_validate_json(bytes(message.payload))  # type: ignore[arg-type]


async def test_full_run_winners_masked(stack: tuple[httpx.AsyncClient, Observer], pool: asyncpg.Pool) -> None:
    client, _ = stack
    draw_id = await create(client)
    await add_entries(pool, draw_id, [11, 2222, 33333, 44444, 55555])
    draw = await run_to_completion(client, draw_id)
    assert [winner["cpf_masked"][:4] for winner in draw["winners"]] == ["***."] * 3


async def test_full_run_no_personal_data(stack: tuple[httpx.AsyncClient, Observer], pool: asyncpg.Pool) -> None:
    client, observer = stack
    draw_id = await create(client)
    await add_entries(pool, draw_id, [11, 2222, 33333, 44444, 55555])
    await run_to_completion(client, draw_id)
    await wait_until(lambda: _has_finished(observer))
    leaked = [body for _, body in observer.messages if PERSONAL.search(body.decode())]
    assert leaked == []


async def _has_finished(observer: Observer) -> bool:
    return any(step["kind"] == "finished" for step in observer.payloads("/live"))


async def test_live_sequence(stack: tuple[httpx.AsyncClient, Observer], pool: asyncpg.Pool) -> None:
    client, observer = stack
    draw_id = await create(client)
    await add_entries(pool, draw_id, [11, 2222, 33333])
    await run_to_completion(client, draw_id)
    await wait_until(lambda: _has_finished(observer))
    assert [step["sequence"] for step in observer.payloads("/live")] == list(range(1, 9))


async def test_late_subscriber_state(stack: tuple[httpx.AsyncClient, Observer], pool: asyncpg.Pool, settings: Settings) -> None:
    client, observer = stack
    draw_id = await create(client)
    await add_entries(pool, draw_id, [11, 2222, 33333, 44444])
    await run_to_completion(client, draw_id)
    await wait_until(lambda: _has_finished(observer))
    state = await late_state(settings, draw_id)
    assert state.status == "completed"
    assert len(state.winners) == 3
    assert state.seed is not None


async def test_verify_audit(stack: tuple[httpx.AsyncClient, Observer], pool: asyncpg.Pool) -> None:
    client, _ = stack
    draw_id = await create(client)
    await add_entries(pool, draw_id, [11, 2222, 33333, 44444, 55555])
    await run_to_completion(client, draw_id)
    audit = DrawAudit.model_validate((await client.get(f"/v1/draws/{draw_id}/audit")).json())
    assert verify_audit(audit).ok


async def test_notifications(stack: tuple[httpx.AsyncClient, Observer], pool: asyncpg.Pool) -> None:
    client, _ = stack
    draw_id = await create(client)
    await add_entries(pool, draw_id, [11, 2222, 33333, 44444])
    await run_to_completion(client, draw_id)
    assert await pool.fetchval("SELECT count(*) FROM notifications WHERE kind = 'prize_won'") == 3


async def test_no_entries(stack: tuple[httpx.AsyncClient, Observer]) -> None:
    client, _ = stack
    draw_id = await create(client)
    draw = await run_to_completion(client, draw_id)
    assert (draw["entry_count"], draw["winners"]) == (0, [])


async def test_trigger_twice_runs_once(stack: tuple[httpx.AsyncClient, Observer], pool: asyncpg.Pool, settings: Settings) -> None:
    client, _ = stack
    draw_id = await create(client)
    await add_entries(pool, draw_id, [11, 2222, 33333, 44444])
    await client.post(f"/v1/draws/{draw_id}/trigger", headers=AUTH)
    # A second DrawTriggered slips past the API's guard, as a replayed event would.
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute("UPDATE draws SET triggered_at = NULL WHERE id = $1", uuid.UUID(draw_id))
        await draw_admin.trigger(connection, settings, uuid.UUID(draw_id), "scheduler")
    await run_to_completion(client, draw_id)
    await wait_until(lambda: _all_applied(pool))
    assert await pool.fetchval("SELECT count(*) FROM draw_live_steps") == 8


async def _all_applied(pool: asyncpg.Pool) -> bool:
    return bool(await pool.fetchval("SELECT bool_and(status = 'applied') FROM deliveries WHERE consumer = 'draws'"))


async def test_loteria_federal(stack: tuple[httpx.AsyncClient, Observer], pool: asyncpg.Pool) -> None:
    client, _ = stack
    draw_id = await create(client, mode="loteria_federal", prizes=["Carro"])
    await add_entries(pool, draw_id, [1000, 64455, 90000])
    await client.put(f"/v1/draws/{draw_id}/loteria-federal", json={"prizes": LOTERIA}, headers=AUTH)
    draw = await run_to_completion(client, draw_id)
    assert [winner["number"] for winner in draw["winners"]] == [64455]


async def test_loteria_federal_verifies(stack: tuple[httpx.AsyncClient, Observer], pool: asyncpg.Pool) -> None:
    client, _ = stack
    draw_id = await create(client, mode="loteria_federal", prizes=["Carro", "Moto"])
    await add_entries(pool, draw_id, [1000, 64456, 90000])
    await client.put(f"/v1/draws/{draw_id}/loteria-federal", json={"prizes": LOTERIA}, headers=AUTH)
    await run_to_completion(client, draw_id)
    audit = DrawAudit.model_validate((await client.get(f"/v1/draws/{draw_id}/audit")).json())
    assert verify_audit(audit).ok


async def test_scheduler_freezes_and_triggers(pool: asyncpg.Pool, settings: Settings) -> None:
    now = datetime.now(UTC)
    new = draw_admin.NewDraw(title="Agendado", prizes=["Carro"], scheduled_at=now, cutoff_at=now - timedelta(seconds=1))
    async with pool.acquire() as connection, connection.transaction():
        await draw_admin.create_draw(connection, settings, new)
    await asyncio.gather(draw_jobs.freeze_due(pool, settings), draw_jobs.freeze_due(pool, settings))
    await asyncio.gather(draw_jobs.trigger_due(pool, settings), draw_jobs.trigger_due(pool, settings))
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE topic LIKE '%/draws/triggered'") == 1


async def test_scheduler_freeze_closes(pool: asyncpg.Pool, settings: Settings) -> None:
    now = datetime.now(UTC)
    new = draw_admin.NewDraw(title="Agendado", prizes=["Carro"], scheduled_at=now + timedelta(hours=1), cutoff_at=now - timedelta(seconds=1))
    async with pool.acquire() as connection, connection.transaction():
        await draw_admin.create_draw(connection, settings, new)
    await draw_jobs.freeze_due(pool, settings)
    assert await pool.fetchval("SELECT status FROM draws") == "closed"
