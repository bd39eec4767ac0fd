"""Migration 0003: the draw columns, the snapshot table and the winners table."""

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from festival.domain.draws import commitment, draw_winners, freeze_numbers, new_seed, snapshot_bytes, snapshot_from_bytes
from festival.domain.privacy import display_name, mask_cpf


async def insert_draw(connection: asyncpg.Connection, **columns: object) -> uuid.UUID:
    draw_id = uuid.uuid4()
    now = datetime.now(UTC)
    values = {"title": "Sorteio de teste", "scheduled_at": now + timedelta(days=1), "cutoff_at": now,
              "series": 1, "number_key": b"k" * 32, **columns}
    names = ", ".join(values)
    placeholders = ", ".join(f"${i}" for i in range(2, len(values) + 2))
    await connection.execute(f"INSERT INTO draws (id, {names}) VALUES ($1, {placeholders})", draw_id, *values.values())
    return draw_id


@pytest.fixture
async def connection(database_url: str):  # type: ignore[no-untyped-def]
    from festival.db import connect

    connection = await connect(database_url)
    yield connection
    await connection.close()


async def test_draw_defaults(connection: asyncpg.Connection) -> None:
    draw_id = await insert_draw(connection)
    row = await connection.fetchrow("SELECT mode, pace_ms, prizes, seed FROM draws WHERE id = $1", draw_id)
    assert row["mode"] == "random"
    assert row["pace_ms"] == 3000
    assert row["prizes"] == []
    assert row["seed"] is None


async def test_draw_round_trip(connection: asyncpg.Connection) -> None:
    seed = new_seed()
    draw_id = await insert_draw(connection, prizes=["Carro", "Moto"], seed=seed, commitment=commitment(seed))

    for number, ref in ((10, "sub-1"), (20, "sub-2"), (30, "sub-3")):
        await connection.execute(
            "INSERT INTO lucky_numbers (draw_id, number, subscription_ref, charge_id) VALUES ($1, $2, $3, $4)",
            draw_id, number, ref, f"charge-{ref}",
        )
    rows = await connection.fetch("SELECT number FROM lucky_numbers WHERE draw_id = $1 AND voided_at IS NULL", draw_id)
    snapshot = freeze_numbers([row["number"] for row in rows])

    await connection.execute("INSERT INTO draw_snapshots (draw_id, numbers) VALUES ($1, $2)", draw_id,
                             snapshot_bytes(snapshot.numbers))
    await connection.execute("UPDATE draws SET snapshot_sha256 = $2, snapshot_count = $3, frozen_at = now() WHERE id = $1",
                             draw_id, snapshot.sha256, snapshot.count)
    winner = draw_winners(seed, snapshot, 1)[0]
    await connection.execute(
        "INSERT INTO draw_winners (draw_id, position, number, subscription_ref, display_name, masked_cpf)"
        " VALUES ($1, $2, $3, 'sub-x', $4, $5)",
        draw_id, winner.position, winner.number, display_name("Maria da Silva"), mask_cpf("12345678909"),
    )

    stored = await connection.fetchval("SELECT numbers FROM draw_snapshots WHERE draw_id = $1", draw_id)
    assert snapshot_from_bytes(stored).sha256 == snapshot.sha256
    assert await connection.fetchval("SELECT count(*) FROM draw_winners WHERE draw_id = $1", draw_id) == 1


async def test_draw_rejects_invalid_seed(connection: asyncpg.Connection) -> None:
    with pytest.raises(asyncpg.CheckViolationError):
        await insert_draw(connection, seed="xyz", commitment="ab" * 32)


async def test_draw_rejects_seed_without_commitment(connection: asyncpg.Connection) -> None:
    with pytest.raises(asyncpg.CheckViolationError):
        await insert_draw(connection, seed="ab" * 32)


async def test_draw_rejects_bad_loteria_results(connection: asyncpg.Connection) -> None:
    with pytest.raises(asyncpg.CheckViolationError):
        await insert_draw(connection, mode="loteria_federal", loteria_results=["50366", "3351", "45504", "94365", "51105"])


async def test_draw_accepts_loteria_results(connection: asyncpg.Connection) -> None:
    results = ["50366", "33514", "45504", "94365", "51105"]
    draw_id = await insert_draw(connection, mode="loteria_federal", loteria_results=results)
    assert await connection.fetchval("SELECT loteria_results FROM draws WHERE id = $1", draw_id) == results


async def test_completed_loteria_needs_results(connection: asyncpg.Connection) -> None:
    with pytest.raises(asyncpg.CheckViolationError):
        await insert_draw(connection, mode="loteria_federal", status="completed")


async def test_winner_must_hold_issued_number(connection: asyncpg.Connection) -> None:
    draw_id = await insert_draw(connection)
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await connection.execute(
            "INSERT INTO draw_winners (draw_id, position, number, subscription_ref, display_name, masked_cpf)"
            " VALUES ($1, 1, 99, 'sub-x', 'Maria S.', '***.456.789-**')",
            draw_id,
        )
