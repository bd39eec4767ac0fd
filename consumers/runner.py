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

# Messages one instance takes from each subscription before acknowledging them. A consumer that
# batches (see `DeliveryHandler`) applies the ones that wait in a few shared transactions, so more
# of them make larger batches under load.
WORKERS = 32
# Connections of one instance: its delivery transactions and its background task. Handlers that
# do not batch wait for a free one.
POOL_SIZE = 10


class ConsumerModule(Protocol):
    """A consumer module, which may also define `lock_key` and `NOTIFY_AFTER_COMMIT` (see
    `DeliveryHandler`) and `run_background`."""

    NAME: str

    def build(self, settings: Settings) -> Apply: ...


Background = Callable[[Settings, asyncpg.Pool], Coroutine[Any, Any, None]]


@dataclass
class RunningConsumer:
    """A started consumer: its broker connection and its background task, if the module has one."""

    broker: MQTTBroker
    handler: DeliveryHandler
    background: "asyncio.Task[None] | None" = None

    async def stop(self) -> None:
        await self.broker.stop()
        await self.handler.close()
        if self.background is not None:
            self.background.cancel()
            await asyncio.gather(self.background, return_exceptions=True)


def _log_background_end(task: "asyncio.Task[None]") -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("consumer background task failed task=%s", task.get_name(), exc_info=task.exception())


def load_consumer(name: str) -> ConsumerModule:
    module = importlib.import_module(f"consumers.{name}")
    return module  # type: ignore[return-value]


async def _whole_message(message: MQTTMessage) -> MQTTMessage:
    """Decode a message into itself, so that the handler receives topic and headers with the body."""
    return message


def subscribe(broker: MQTTBroker, handler: DeliveryHandler, settings: Settings) -> None:
    """Subscribe `handler` to every topic its consumer must apply, shared between instances.

    The broker must be built with `apply_types=False`: FastStream's dependency injection resolves
    an `MQTTMessage` parameter in a worker thread, which cost about a fifth of a consumer's CPU
    per message (py-spy, `bench/pipeline_latency.py` at 200 webhooks/s). Without it the handler
    receives what the decoder returns, here the message itself.
    """
    for relative in topics.topics_of(handler.consumer):
        topic = topics.absolute(settings.topic_root, relative)
        shared = handler.consumer if settings.mqtt_shared_subscriptions else None

        async def on_message(message: MQTTMessage) -> None:
            # On MQTT 5 the headers are the user properties, which repeat the trace context.
            await handler.handle(message.body, message.raw_message.topic, message.headers)

        broker.subscriber(
            topic,
            qos=QoS.AT_LEAST_ONCE,
            shared=shared,
            max_workers=WORKERS,
            decoder=_whole_message,
            title=f"{handler.consumer}:{relative}",
        )(on_message)


async def start_consumer(name: str, settings: Settings, pool: asyncpg.Pool) -> RunningConsumer:
    """Build and start consumer `name` (broker connection and background task); the caller stops it."""
    module = load_consumer(name)
    handler = DeliveryHandler(
        module.NAME,
        module.build(settings),
        pool,
        Outbox.from_settings(settings),
        DeliveryPolicy(settings.redelivery_max_attempts, settings.redelivery_after_seconds),
        lock_key=getattr(module, "lock_key", None),
        notify_after_commit=getattr(module, "NOTIFY_AFTER_COMMIT", False),
    )
    broker = faststream_broker(
        settings, client_id=f"{name}-{uuid.uuid4().hex[:8]}", graceful_timeout=5.0, apply_types=False
    )
    subscribe(broker, handler, settings)
    await broker.start()

    background: Background | None = getattr(module, "run_background", None)
    if background is None:
        return RunningConsumer(broker, handler)
    task: asyncio.Task[None] = asyncio.create_task(background(settings, pool), name=f"{name}-background")
    task.add_done_callback(_log_background_end)
    return RunningConsumer(broker, handler, task)


async def run_consumer(name: str, settings: Settings) -> None:
    """Run consumer `name` until cancelled."""
    url = settings.require_database_url()
    await migrate(url)
    # Delivery handlers and background tasks use transaction-scoped locks only. The pusher's
    # session lock and LISTEN live on a connection of their own.
    pool = await create_pool(url, min_size=2, max_size=POOL_SIZE, reset_session=False)
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
