"""Server-sent events fallback of the live draw page, for networks that block the broker's WebSocket port.

Each stream opens its own MQTT subscription with the service credentials and forwards every
message of the public draw topics unchanged: the event name is the message kind (`current`,
`state` or `live`) and the data is the JSON payload as published. Retained messages arrive first,
so a new stream starts with the whole current state, as an MQTT subscriber would.
"""

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from uuid import UUID

import aiomqtt
from fastapi import APIRouter, Request
from starlette.responses import StreamingResponse

from broker import topics
from broker.connection import aiomqtt_client
from festival.settings import Settings
from festival.telemetry_metrics import screen_connections
from gateway.problems import ProblemError

logger = logging.getLogger(__name__)

router = APIRouter(tags=["live"])

# NOTE: a guess, not measured. Each stream holds one broker connection and one task.
MAX_STREAMS = 200
KEEPALIVE_SECONDS = 15.0
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
# NOTE: screens on MQTT over WebSockets connect to the broker directly and are not counted here.
SSE_TRANSPORT = {"festival.transport": "sse"}


class StreamSlots:
    """Count of open event streams of one app, bounded by `MAX_STREAMS`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0

    def acquire(self) -> bool:
        if self.open >= self.limit:
            return False
        self.open += 1
        screen_connections.add(1, SSE_TRANSPORT)
        return True

    def release(self) -> None:
        self.open -= 1
        screen_connections.add(-1, SSE_TRANSPORT)


def stream_slots(request: Request) -> StreamSlots:
    slots: StreamSlots | None = getattr(request.app.state, "live_stream_slots", None)
    if slots is None:
        slots = StreamSlots(MAX_STREAMS)
        request.app.state.live_stream_slots = slots
    return slots


def message_kind(root: str, topic: str) -> str | None:
    """Return `current`, `state` or `live` for a public draw topic, None for any other."""
    parts = topics.relative_to(root, topic).split("/")
    if parts == ["draws", "current"]:
        return "current"
    if len(parts) == 3 and parts[0] == "draws" and parts[2] in ("state", "live"):
        return parts[2]
    return None


def format_event(kind: str, payload: bytes) -> bytes:
    # A payload with line breaks becomes several `data:` lines, which the browser joins again.
    lines = payload.decode("utf-8").splitlines() or [""]
    data = "".join(f"data: {line}\n" for line in lines)
    return f"event: {kind}\n{data}\n".encode()


async def forward(settings: Settings, subscriptions: list[str], request: Request, slots: StreamSlots) -> AsyncIterator[bytes]:
    stream_id = uuid.uuid4().hex[:12]
    logger.info("live stream opened stream=%s topics=%s open=%d", stream_id, subscriptions, slots.open)
    try:
        async with aiomqtt_client(settings, identifier=f"festival-sse-{stream_id}") as client:
            for topic in subscriptions:
                await client.subscribe(topic, qos=1)
            yield b": conectado\n\n"

            messages = aiter(client.messages)
            while not await request.is_disconnected():
                try:
                    async with asyncio.timeout(KEEPALIVE_SECONDS):
                        message = await anext(messages)
                except TimeoutError:
                    yield b": keepalive\n\n"
                    continue

                payload = message.payload if isinstance(message.payload, bytes) else str(message.payload or "").encode()
                kind = message_kind(settings.topic_root, str(message.topic))
                # An empty retained payload clears a topic; the page has nothing to show for it.
                if kind is not None and payload:
                    yield format_event(kind, payload)
    except aiomqtt.MqttError as error:
        # The browser sees the stream end and reconnects with backoff.
        logger.warning("live stream broker error stream=%s error=%s", stream_id, error)
        yield b"event: broker_error\ndata: {}\n\n"
    finally:
        slots.release()
        logger.info("live stream closed stream=%s open=%d", stream_id, slots.open)


def open_stream(request: Request, subscriptions: list[str]) -> StreamingResponse:
    slots = stream_slots(request)
    if not slots.acquire():
        logger.warning("live stream rejected open=%d limit=%d", slots.open, slots.limit)
        raise ProblemError(
            503, "too_many_streams", "Too many live streams",
            "Muitas telas conectadas a este servidor; tente novamente em instantes.",
            headers={"Retry-After": "10"},
        )
    settings: Settings = request.app.state.settings
    return StreamingResponse(
        forward(settings, subscriptions, request, slots), media_type="text/event-stream", headers=SSE_HEADERS
    )


@router.get("/ao-vivo/eventos")
async def current_draw_events(request: Request) -> StreamingResponse:
    """Stream `draws/current` and the state and steps of every draw, for a page that follows the current one."""
    root = request.app.state.settings.topic_root
    subscriptions = [
        topics.absolute(root, topics.DRAWS_CURRENT),
        topics.absolute(root, topics.draw_state("+")),
        topics.absolute(root, topics.draw_live("+")),
    ]
    return open_stream(request, subscriptions)


@router.get("/v1/draws/{draw_id}/events")
async def draw_events(request: Request, draw_id: UUID) -> StreamingResponse:
    """Stream the state and steps of one draw as server-sent events."""
    root = request.app.state.settings.topic_root
    subscriptions = [
        topics.absolute(root, topics.DRAWS_CURRENT),
        topics.absolute(root, topics.draw_state(str(draw_id))),
        topics.absolute(root, topics.draw_live(str(draw_id))),
    ]
    return open_stream(request, subscriptions)
