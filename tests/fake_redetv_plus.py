"""The fake REDETV!PLUS entitlements API of `tests/test_entitlements.py`, served on 127.0.0.1 for
flow tests, with two additions: request times, and a first request that never gets a response."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import uvicorn
from starlette.requests import Request
from starlette.responses import Response

from festival.services import free_port
from tests.helpers import wait_until
from tests.test_entitlements import TOKEN, FakeRedetvPlus

__all__ = ["TOKEN", "SlowRedetvPlus", "serve_fake_redetv"]


@dataclass
class SlowRedetvPlus(FakeRedetvPlus):
    """`FakeRedetvPlus` that records when each request arrived and can hold the first one forever."""

    hang_first: bool = False
    arrived_at: list[datetime] = field(default_factory=list)
    hanging: asyncio.Event = field(default_factory=asyncio.Event)

    async def put_entitlement(self, request: Request) -> Response:
        self.arrived_at.append(datetime.now(UTC))
        if self.hang_first and not self.hanging.is_set():
            # The caller is killed while it waits; this request never reaches the recorded list.
            self.hanging.set()
            await asyncio.Event().wait()
        return await super().put_entitlement(request)


@contextlib.asynccontextmanager
async def serve_fake_redetv(fake: SlowRedetvPlus) -> AsyncIterator[SlowRedetvPlus]:
    """Serve `fake` on a free port of 127.0.0.1 for the duration of the block."""
    port = free_port()
    config = uvicorn.Config(fake.app(), host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(), name="fake-redetv-plus")

    async def started() -> bool:
        return server.started

    await wait_until(started)
    fake.url = f"http://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        server.should_exit = True
        # A hanging request keeps uvicorn waiting for it; cut the wait short.
        server.force_exit = True
        await asyncio.gather(task, return_exceptions=True)
