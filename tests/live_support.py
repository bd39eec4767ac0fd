"""Helpers for the live page tests: a gateway on a real port, headless Chromium and draw messages."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiomqtt
import uvicorn

from broker import topics
from broker.connection import aiomqtt_client
from festival.services import free_port
from festival.settings import Settings
from gateway.app import create_app
from schemas.live import CurrentDraw, DrawState, LivePrize, LiveStep, LiveWinner

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@asynccontextmanager
async def running_gateway(settings: Settings) -> AsyncIterator[str]:
    """Serve the gateway on a free loopback port and yield its base URL."""
    port = free_port()
    # Without a shutdown timeout, an open event stream would keep the server from stopping.
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


class DrawScript:
    """A draw's public messages, built step by step as the draws consumer would publish them."""

    def __init__(self, winners: list[tuple[str, str, int]]) -> None:
        self.draw_id = uuid.uuid4()
        self.now = datetime.now(UTC)
        self.winners = [
            LiveWinner(position=i + 1, number=n, number_display=f"{n:05d}", display_name=name, cpf_masked=cpf)
            for i, (name, cpf, n) in enumerate(winners)
        ]
        self.steps: list[LiveStep] = []

    def step(self, kind: str, **fields: object) -> LiveStep:
        step = LiveStep(
            draw_id=self.draw_id,
            sequence=len(self.steps) + 1,
            kind=kind,  # type: ignore[arg-type]
            at=datetime.now(UTC),
            **fields,  # type: ignore[arg-type]
        )
        self.steps.append(step)
        return step

    def all_steps(self) -> list[LiveStep]:
        """Return the steps of a whole draw: started, a number and a winner per prize, finished."""
        self.step("started")
        for winner in self.winners:
            self.step("number_drawn", position=winner.position, number=winner.number, number_display=winner.number_display)
            self.step("winner", position=winner.position, number=winner.number, number_display=winner.number_display, winner=winner)
        self.step("finished")
        return self.steps

    def state(self, status: str, upto: int) -> DrawState:
        done = self.steps[:upto]
        return DrawState(
            draw_id=self.draw_id,
            title="Sorteio de teste da semana",
            status=status,  # type: ignore[arg-type]
            sequence=upto,
            updated_at=datetime.now(UTC),
            scheduled_at=self.now + timedelta(minutes=1),
            cutoff_at=self.now,
            prizes=[LivePrize(position=w.position, description=f"Prêmio {w.position}") for w in self.winners],
            commitment="ab" * 32,
            numbers_drawn=[s for s in done if s.kind == "number_drawn"],
            winners=[s.winner for s in done if s.winner is not None],
            seed="cd" * 32 if status == "completed" else None,
            verify_url=f"/v1/draws/{self.draw_id}/audit",
        )

    def current(self, status: str) -> CurrentDraw:
        return CurrentDraw(draw_id=self.draw_id, status=status, scheduled_at=self.now, updated_at=datetime.now(UTC))  # type: ignore[arg-type]


class Publisher:
    """Publishes live messages with the service credentials, as the draws consumer does."""

    def __init__(self, client: aiomqtt.Client, root: str) -> None:
        self.client = client
        self.root = root

    async def current(self, message: CurrentDraw) -> None:
        await self.client.publish(topics.absolute(self.root, topics.DRAWS_CURRENT), message.model_dump_json(), qos=1, retain=True)

    async def state(self, message: DrawState) -> None:
        topic = topics.absolute(self.root, topics.draw_state(str(message.draw_id)))
        await self.client.publish(topic, message.model_dump_json(), qos=1, retain=True)

    async def step(self, message: LiveStep) -> None:
        topic = topics.absolute(self.root, topics.draw_live(str(message.draw_id)))
        await self.client.publish(topic, message.model_dump_json(), qos=1)

    async def clear(self, draw_id: uuid.UUID) -> None:
        """Remove the retained messages of a test, so later tests start from nothing."""
        await self.client.publish(topics.absolute(self.root, topics.DRAWS_CURRENT), b"", qos=1, retain=True)
        await self.client.publish(topics.absolute(self.root, topics.draw_state(str(draw_id))), b"", qos=1, retain=True)


@asynccontextmanager
async def publisher(settings: Settings) -> AsyncIterator[Publisher]:
    async with aiomqtt_client(settings) as client:
        yield Publisher(client, settings.topic_root)


