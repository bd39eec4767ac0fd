"""PostgreSQL pool and schema migrations."""

import json
import logging
from importlib import resources

import asyncpg

logger = logging.getLogger(__name__)

# Serialises concurrent `festival migrate` runs (several components start at once in compose).
MIGRATION_LOCK_KEY = 7_405_113_201


async def _init_connection(connection: asyncpg.Connection) -> None:
    for type_name in ("json", "jsonb"):
        await connection.set_type_codec(
            type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Skip the reset query, because asyncpg has already rolled back any open transaction."""


async def create_pool(url: str, *, min_size: int = 1, max_size: int = 10, reset_session: bool = True) -> asyncpg.Pool:
    """Open a pool whose connections encode and decode json/jsonb as Python objects.

    By default asyncpg sends `RESET ALL`, `UNLISTEN *` and `pg_advisory_unlock_all()` to the
    server each time a connection goes back to the pool: one more round trip per transaction.
    Pass `reset_session=False` only where no code on the pool leaves session state behind
    (session-level advisory locks, `SET` without `LOCAL`, `LISTEN`, open cursors).
    """
    return await asyncpg.create_pool(
        url,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=None if reset_session else _keep_session,
    )


async def connect(url: str) -> asyncpg.Connection:
    connection = await asyncpg.connect(url)
    await _init_connection(connection)
    return connection


def _migration_files() -> list[tuple[str, str]]:
    folder = resources.files("festival.migrations")
    names = sorted(item.name for item in folder.iterdir() if item.name.endswith(".sql"))
    return [(name.removesuffix(".sql"), folder.joinpath(name).read_text("utf-8")) for name in names]


async def migrate(url: str) -> list[str]:
    """Apply every migration not applied yet, each in its own transaction; return the applied versions."""
    connection = await asyncpg.connect(url)
    applied_now: list[str] = []
    try:
        await connection.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)

        await connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        rows = await connection.fetch("SELECT version FROM schema_migrations")
        done = {row["version"] for row in rows}

        for version, sql in _migration_files():
            if version in done:
                continue
            async with connection.transaction():
                await connection.execute(sql)
                await connection.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
            logger.info("migration applied version=%s", version)
            applied_now.append(version)
    finally:
        await connection.close()
    return applied_now
