"""Run the gateway under uvicorn until the task running `serve` is cancelled."""

import asyncio
import contextlib
import gc
import logging
from collections.abc import Iterator

import uvicorn

from festival.db import migrate
from festival.settings import Settings
from gateway.app import create_app

logger = logging.getLogger(__name__)

GRACEFUL_SHUTDOWN_SECONDS = 10


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to its caller (the `festival` command)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(settings: Settings) -> None:
    """Apply pending migrations, then serve HTTP until cancelled, finishing in-flight requests."""
    applied = await migrate(settings.require_database_url())
    logger.info("migrations checked applied=%d", len(applied))

    app = create_app(settings)
    # The modules, the app and its pydantic schemas live as long as the process. Frozen, they are
    # left out of every later garbage collection. Unfrozen, each full collection scanned them all
    # again and paused the gateway for about 45 ms under the load of bench/ingest.py.
    gc.collect()
    gc.freeze()

    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        loop="uvloop",
        access_log=False,
        log_config=None,
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(), name="gateway-uvicorn")
    logger.info("gateway starting host=%s port=%d", settings.http_host, settings.http_port)

    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        logger.info("gateway stopping")
        server.should_exit = True
        await task
        raise
