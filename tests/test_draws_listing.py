"""GET /v1/draws: the winners of every listed draw, loaded with one query however many draws there are."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from festival.db import connect, create_pool
from festival.domain.draws import commitment, new_seed
from festival.domain.lucky_numbers import format_number
from festival.domain.privacy import CPF_MISSING
from festival.settings import Settings
from tests.conftest import OPERATOR_TOKEN
from tests.gateway_support import gateway_client

AUTH = {"authorization": f"Bearer {OPERATOR_TOKEN}"}


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with gateway_client(settings) as client:
        yield client


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    connection = await connect(settings.require_database_url())
    yield connection
    await connection.close()


async def insert_draw(
    db: asyncpg.Connection, status: str, winners: list[tuple[int, str, str]], *, hours_ahead: int = 1
) -> uuid.UUID:
    """Insert a draw in `status` whose prizes went to `winners`, each (number, display name, masked CPF)."""
    draw_id = uuid.uuid4()
    seed = new_seed()
    now = datetime.now(UTC)
    await db.execute(
        "INSERT INTO draws (id, title, status, scheduled_at, cutoff_at, series, number_key, prizes, seed, commitment)"
        " VALUES ($1, 'Sorteio', $2, $3, $4, 1, $5, $6, $7, $8)",
        draw_id, status, now + timedelta(hours=hours_ahead), now, b"k" * 32,
        [f"Prêmio {position}" for position in range(1, len(winners) + 1)], seed, commitment(seed),
    )

    for position, (number, name, cpf) in enumerate(winners, start=1):
        await db.execute(
            "INSERT INTO lucky_numbers (draw_id, number, subscription_ref, charge_id) VALUES ($1, $2, $3, $4)",
            draw_id, number, f"sub-{number}", f"ch-{number}",
        )
        await db.execute(
            "INSERT INTO draw_winners (draw_id, position, number, subscription_ref, display_name, masked_cpf)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            draw_id, position, number, f"sub-{number}", name, cpf,
        )
    return draw_id


def expected_winner(position: int, number: int, name: str, cpf: str) -> dict[str, Any]:
    return {
        "position": position,
        "number": number,
        "number_display": format_number(number, 1),
        "display_name": name,
        "cpf_masked": None if cpf == CPF_MISSING else cpf,
    }


async def list_draws(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    response = await client.get("/v1/draws", headers=AUTH)
    assert response.status_code == 200, response.text
    return {item["id"]: item for item in response.json()}



@pytest.fixture
async def statements(client: httpx.AsyncClient, settings: Settings) -> AsyncIterator[list[str]]:
    """Every statement the gateway sends to PostgreSQL, through a pool of one logged connection."""
    logged: list[str] = []
    pool = await create_pool(settings.require_database_url(), min_size=1, max_size=1)
    async with pool.acquire() as connection:
        connection.add_query_logger(lambda query: logged.append(query.query))

    app = client.app  # type: ignore[attr-defined]
    own_pool = app.state.pool
    app.state.pool = pool
    yield logged
    app.state.pool = own_pool
    await pool.close()


async def statements_of_listing(client: httpx.AsyncClient, statements: list[str]) -> list[str]:
    statements.clear()
    await list_draws(client)
    # asyncpg hands each logged query to the loop with call_soon; one pass of the loop delivers them.
    await asyncio.sleep(0)
    return list(statements)


MARIA = (101, "Maria S.", "***.456.789-**")
JOAO = (202, "João P.", "***.111.222-**")
ANA = (303, "Ana", CPF_MISSING)


async def test_list_winners_per_draw(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    first = await insert_draw(db, "completed", [MARIA, JOAO], hours_ahead=1)
    second = await insert_draw(db, "completed", [ANA], hours_ahead=2)
    draws = await list_draws(client)
    assert draws[str(first)]["winners"] == [expected_winner(1, *MARIA), expected_winner(2, *JOAO)]
    assert draws[str(second)]["winners"] == [expected_winner(1, *ANA)]


async def test_list_hides_winners_before_completion(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    drawing = await insert_draw(db, "drawing", [MARIA])
    draws = await list_draws(client)
    assert draws[str(drawing)]["winners"] == []
    assert draws[str(drawing)]["seed"] is None


async def test_list_completed_without_winners(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    draw_id = await insert_draw(db, "completed", [])
    draws = await list_draws(client)
    assert draws[str(draw_id)]["winners"] == []


async def test_list_items_match_single_views(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    await insert_draw(db, "completed", [MARIA, JOAO], hours_ahead=1)
    await insert_draw(db, "completed", [ANA], hours_ahead=2)
    await insert_draw(db, "drawing", [(404, "Rita C.", "***.333.444-**")], hours_ahead=3)
    await insert_draw(db, "scheduled", [], hours_ahead=4)

    draws = await list_draws(client)
    for draw_id, listed in draws.items():
        single = await client.get(f"/v1/draws/{draw_id}")
        assert listed == single.json(), draw_id


async def test_list_order(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    later = await insert_draw(db, "completed", [MARIA], hours_ahead=5)
    earlier = await insert_draw(db, "completed", [JOAO], hours_ahead=1)
    response = await client.get("/v1/draws", headers=AUTH)
    assert [item["id"] for item in response.json()] == [str(later), str(earlier)]


async def test_list_one_winners_query(
    client: httpx.AsyncClient, db: asyncpg.Connection, statements: list[str]
) -> None:
    for hours in range(1, 5):
        await insert_draw(db, "completed", [(hours * 100 + 1, "Maria S.", "***.456.789-**")], hours_ahead=hours)
    sent = await statements_of_listing(client, statements)
    winners_queries = [query for query in sent if "draw_winners" in query]
    assert len(winners_queries) == 1


async def test_list_queries_constant(
    client: httpx.AsyncClient, db: asyncpg.Connection, statements: list[str]
) -> None:
    await insert_draw(db, "completed", [MARIA], hours_ahead=1)
    # The first listing on a connection also sends asyncpg's one-time type introspection queries.
    await statements_of_listing(client, statements)
    with_one = await statements_of_listing(client, statements)

    for hours in range(2, 6):
        await insert_draw(db, "completed", [(hours * 100 + 7, "João P.", "***.111.222-**")], hours_ahead=hours)
    with_five = await statements_of_listing(client, statements)

    assert len(with_five) == len(with_one), with_five
