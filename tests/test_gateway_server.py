"""The gateway process: migrations, uvicorn on 127.0.0.1 and a clean stop on cancellation."""

import asyncio
import contextlib

import httpx

from festival.services import free_port
from festival.settings import Settings
from gateway.server import serve
from tests.helpers import wait_until


async def test_serve_answers_then_stops(settings: Settings) -> None:
    port = free_port()
    task = asyncio.create_task(serve(settings.model_copy(update={"http_port": port})), name="test-gateway")
    url = f"http://127.0.0.1:{port}/readyz"

    async def answering() -> bool:
        with contextlib.suppress(httpx.TransportError):
            async with httpx.AsyncClient() as client:
                return (await client.get(url)).status_code == 200
        return False

    try:
        await wait_until(answering, timeout=15)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=15)

    assert task.done()
    assert not await answering()
