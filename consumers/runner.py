"""Running one consumer: its FastStream subscriptions feed the exactly-once delivery handler.

A consumer module may also define `run_background(settings, pool)`, a coroutine that runs until
cancelled beside the subscriptions (the subscriptions consumer pushes entitlements there, after
the delivery transactions commit). `RunningConsumer.stop` cancels it.
"""

import asyncio
import importlib
import logging
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg
from faststream.mqtt import MQTTBroker, MQTTMessage, QoS

from broker import topics
from broker.connection import faststream_broker
from consumers.delivery import Apply, DeliveryHandler, DeliveryPolicy
from festival.db import create_pool, migrate
from festival.outbox import Outbox
from festival.settings import Settings

logger = logging.getLogger(__name__)

# Messages one instance processes at once. Each uses a pooled connection while it runs.
WORKERS = 8


class ConsumerModule(Protocol):
    NAME: str

    def build(self, settings: Settings) -> Apply: ...


Background = Callable[[Settings, asyncpg.Pool], Coroutine[Any, Any, None]]


@dataclass
class RunningConsumer:
    """A started consumer: its broker connection and its background task, if the module has one."""

    broker: MQTTBroker
    background: "asyncio.Task[None] | None" = None

    async def stop(self) -> None:
        await self.broker.stop()
        if self.background is not None:
            self.background.cancel()
            await asyncio.gather(self.background, return_exceptions=True)


def _log_background_end(task: "asyncio.Task[None]") -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("consumer background task failed task=%s", task.get_name(), exc_info=task.exception())


def load_consumer(name: str) -> ConsumerModule:
    module = importlib.import_module(f"consumers.{name}")
    return module  # type: ignore[return-value]


def subscribe(broker: MQTTBroker, handler: DeliveryHandler, settings: Settings) -> None:
    """Subscribe `handler` to every topic its consumer must apply, shared between instances."""
    for relative in topics.topics_of(handler.consumer):
        topic = topics.absolute(settings.topic_root, relative)
        shared = handler.consumer if settings.mqtt_shared_subscriptions else None

        async def on_message(message: MQTTMessage) -> None:
            # On MQTT 5 the headers are the user properties, which repeat the trace context.
            await handler.handle(message.body, message.raw_message.topic, message.headers)

        broker.subscriber(topic, qos=QoS.AT_LEAST_ONCE, shared=shared, max_workers=WORKERS, title=f"{handler.consumer}:{relative}")(on_message)


async def start_consumer(name: str, settings: Settings, pool: asyncpg.Pool) -> RunningConsumer:
    """Build and start consumer `name` (broker connection and background task); the caller stops it."""
    module = load_consumer(name)
    handler = DeliveryHandler(
        module.NAME,
        module.build(settings),
        pool,
        Outbox.from_settings(settings),
        DeliveryPolicy(settings.redelivery_max_attempts, settings.redelivery_after_seconds),
    )
    broker = faststream_broker(settings, client_id=f"{name}-{uuid.uuid4().hex[:8]}", graceful_timeout=5.0)
    subscribe(broker, handler, settings)
    await broker.start()

    background: Background | None = getattr(module, "run_background", None)
    if background is None:
        return RunningConsumer(broker)
    task: asyncio.Task[None] = asyncio.create_task(background(settings, pool), name=f"{name}-background")
    task.add_done_callback(_log_background_end)
    return RunningConsumer(broker, task)


async def run_consumer(name: str, settings: Settings) -> None:
    """Run consumer `name` until cancelled."""
    url = settings.require_database_url()
    await migrate(url)
    pool = await create_pool(url, min_size=2, max_size=WORKERS + 2)
    running: RunningConsumer | None = None
    try:
        running = await start_consumer(name, settings, pool)
        logger.info("consumer started name=%s topics=%s", name, topics.topics_of(name))
        await asyncio.Event().wait()
    finally:
        if running is not None:
            await running.stop()
        await pool.close()
        logger.info("consumer stopped name=%s", name)
