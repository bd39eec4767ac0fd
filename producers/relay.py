"""Outbox relay: publishes stored events at QoS 1 and publishes again what consumers have not applied.

Several relays may run at once: each batch is claimed with `FOR UPDATE SKIP LOCKED`, and the rows
are marked published only after every PUBACK arrived, in the same transaction. A relay that dies
mid-batch leaves its rows unpublished, so another relay (or its restart) publishes them again;
consumers ignore the duplicates because they record applied events in PostgreSQL.
"""

import asyncio
import json
import logging
import random
from dataclasses import dataclass
from typing import Any

import aiomqtt
import asyncpg

from broker import tracing
from broker.connection import aiomqtt_client
from festival import telemetry, wakeups
from festival.db import create_pool, migrate
from festival.settings import Settings
from festival.telemetry_metrics import events_published, outbox_sampler, topic_attribute

logger = logging.getLogger(__name__)

NOTIFY_CHANNEL = wakeups.OUTBOX_CHANNEL
# Seconds between two reads of the outbox backlog for the metrics.
OUTBOX_SAMPLE_SECONDS = 10.0
# Shortest time between the starts of two batches. Each batch costs four round trips and a
# commit whatever its size, so at high rates this trades up to that much latency for fewer batches.
BATCH_INTERVAL_SECONDS = 0.002
# A delivery still pending after a redelivery waits longer each time, up to this many periods.
MAX_REDELIVERY_BACKOFF = 16

# Errors after which the relay reconnects to the broker or the database and tries again.
TRANSIENT_ERRORS = (
    aiomqtt.MqttError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    OSError,
    asyncio.TimeoutError,
)


@dataclass(frozen=True)
class OutgoingMessage:
    event_id: Any
    topic: str
    payload: bytes
    retain: bool
    # `traceparent` and `tracestate` as the envelope carries them: the event's creation context.
    trace_fields: dict[str, Any]
    redelivery: bool = False

    @property
    def traceparent(self) -> str | None:
        value = self.trace_fields.get(tracing.TRACEPARENT)
        return value if isinstance(value, str) else None


def _message(row: asyncpg.Record, *, redelivery: bool = False) -> OutgoingMessage:
    envelope = row["envelope"]
    return OutgoingMessage(
        event_id=row["event_id"],
        topic=row["topic"],
        payload=json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode(),
        retain=row["retain"],
        # Plain public messages carry their context in a column; envelopes carry it inside.
        trace_fields=row["trace_fields"] or {name: envelope[name] for name in tracing.TRACE_FIELDS if name in envelope},
        redelivery=redelivery,
    )


class Relay:
    """Moves events from the outbox to the broker; owns no connection, receives them per run."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.wakeup = asyncio.Event()
        self._mqtt5 = settings.mqtt_version == "5"

    async def publish(self, client: aiomqtt.Client, messages: list[OutgoingMessage]) -> None:
        """Publish `messages` in order at QoS 1 and return when the broker acknowledged all of them."""
        await asyncio.gather(*(self._publish_one(client, message) for message in messages))

    async def _publish_one(self, client: aiomqtt.Client, message: OutgoingMessage) -> None:
        topic = topic_attribute(message.topic, self.settings.topic_root)
        with tracing.publish_span(
            message.topic,
            message_id=str(message.event_id),
            creation=message.trace_fields,
            attributes={tracing.FESTIVAL_REDELIVERY: message.redelivery, tracing.MESSAGING_MESSAGE_BODY_SIZE: len(message.payload)},
        ) as publication:
            properties = None
            if self._mqtt5 and publication.user_properties:
                from paho.mqtt.packettypes import PacketTypes
                from paho.mqtt.properties import Properties

                properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
                properties.UserProperty = publication.user_properties
            await client.publish(
                message.topic, message.payload, qos=1, retain=message.retain, properties=properties, timeout=10
            )
        events_published.add(1, {"festival.topic": topic, "festival.redelivery": message.redelivery})

    async def publish_pending(self, pool: asyncpg.Pool, client: aiomqtt.Client) -> int:
        """Publish one batch of unpublished outbox rows; return how many were published."""
        async with pool.acquire() as connection, connection.transaction():
            rows = await connection.fetch(
                "SELECT position, event_id, topic, envelope, retain, trace_fields FROM outbox"
                " WHERE published_at IS NULL ORDER BY position LIMIT $1 FOR UPDATE SKIP LOCKED",
                self.settings.relay_batch_size,
            )
            if not rows:
                return 0

            await self.publish(client, [_message(row) for row in rows])

            await connection.execute(
                "UPDATE outbox SET published_at = now() WHERE position = ANY($1::bigint[])",
                [row["position"] for row in rows],
            )
        logger.debug("published count=%d last_position=%d", len(rows), rows[-1]["position"])
        return len(rows)

    async def redeliver_due(self, pool: asyncpg.Pool, client: aiomqtt.Client) -> int:
        """Publish again the events that some consumer has not applied by their due time."""
        async with pool.acquire() as connection, connection.transaction():
            rows = await connection.fetch(
                "SELECT d.event_id, d.consumer, d.publications, o.topic, o.envelope, o.retain, o.trace_fields"
                " FROM deliveries d JOIN outbox o USING (event_id)"
                " WHERE d.status = 'pending' AND d.due_at <= now() AND o.published_at IS NOT NULL"
                " ORDER BY d.due_at LIMIT $1 FOR UPDATE OF d SKIP LOCKED",
                self.settings.relay_batch_size,
            )
            if not rows:
                return 0

            # An event pending for several consumers is published once for all of them.
            unique = {row["event_id"]: _message(row, redelivery=True) for row in rows}
            await self.publish(client, list(unique.values()))

            await connection.executemany(
                "UPDATE deliveries SET publications = publications + 1,"
                " due_at = now() + make_interval(secs => $3)"
                " WHERE event_id = $1 AND consumer = $2",
                [(row["event_id"], row["consumer"], self._backoff(row["publications"])) for row in rows],
            )
        for row in rows:
            logger.warning(
                "redelivered event_id=%s consumer=%s publications=%d",
                row["event_id"], row["consumer"], row["publications"] + 1,
            )
        return len(rows)

    def _backoff(self, publications: int) -> float:
        factor = min(2 ** (publications + 1), MAX_REDELIVERY_BACKOFF)
        return self.settings.redelivery_after_seconds * factor * random.uniform(0.9, 1.1)

    async def drain(self, pool: asyncpg.Pool, client: aiomqtt.Client) -> None:
        """Publish until the outbox is empty and nothing is due, waiting for a notification in between.

        The polling queries record no spans (each poll would start a trace); the publish spans
        are children of each event's creation context and are recorded.
        """
        with telemetry.suppressed():
            await self._drain(pool, client)

    async def _drain(self, pool: asyncpg.Pool, client: aiomqtt.Client) -> None:
        # Due deliveries are looked for once per poll period, not after every wakeup: under load
        # the relay wakes for nearly every commit, and that extra transaction cost as much CPU as
        # the publishing itself.
        loop = asyncio.get_running_loop()
        next_due_check = 0.0
        while True:
            self.wakeup.clear()
            batch_started = loop.time()
            published = await self.publish_pending(pool, client)
            redelivered = 0
            if loop.time() >= next_due_check:
                redelivered = await self.redeliver_due(pool, client)
                if not redelivered:
                    next_due_check = loop.time() + self.settings.relay_poll_seconds
            # A short batch took every row visible and unlocked. A row committed since then has
            # set `wakeup` again, so looking at once would usually find nothing.
            if published >= self.settings.relay_batch_size or redelivered:
                continue

            try:
                await asyncio.wait_for(self.wakeup.wait(), self.settings.relay_poll_seconds)
            except TimeoutError:
                pass

            # Under load the commits come faster than batches end: waiting until the interval
            # has passed lets one batch take the events of several commits. An idle relay
            # starts at once.
            pause = batch_started + BATCH_INTERVAL_SECONDS - loop.time()
            if pause > 0:
                await asyncio.sleep(pause)


async def _listen(settings: Settings, relay: Relay) -> None:
    """Wake the relay on every outbox insert; reconnect after a database restart.

    Polling every `relay_poll_seconds` covers the time this listener is down.
    """
    delay = 0.5
    while True:
        connection: asyncpg.Connection | None = None
        try:
            connection = await asyncpg.connect(settings.require_database_url())
            await connection.add_listener(NOTIFY_CHANNEL, lambda *_: relay.wakeup.set())
            logger.info("listening channel=%s", NOTIFY_CHANNEL)
            delay = 0.5
            while not connection.is_closed():
                await asyncio.sleep(1)
            logger.warning("listener connection closed channel=%s", NOTIFY_CHANNEL)
        except TRANSIENT_ERRORS as error:
            logger.warning("listener failed error=%r retry_in=%.1fs", error, delay)
        finally:
            if connection is not None and not connection.is_closed():
                await connection.close()
        await asyncio.sleep(delay)
        delay = min(delay * 2, 10)


async def _sample_outbox(pool: asyncpg.Pool) -> None:
    with telemetry.suppressed():
        await outbox_sampler.run(pool, OUTBOX_SAMPLE_SECONDS)


async def run_relay(settings: Settings) -> None:
    """Run the relay until cancelled, reconnecting to the broker and the database as needed."""
    url = settings.require_database_url()
    await migrate(url)
    relay = Relay(settings)
    # Nothing on this pool keeps session state (the listener has a connection of its own).
    pool = await create_pool(url, max_size=4, reset_session=False)
    listener = asyncio.create_task(_listen(settings, relay), name="relay-listener")
    sampler = asyncio.create_task(_sample_outbox(pool), name="relay-outbox-sampler")
    logger.info("relay started topic_root=%s mqtt_version=%s", settings.topic_root, settings.mqtt_version)

    delay = 0.5
    try:
        while True:
            try:
                # A batch is published at once; Mosquitto lets each client have 100 messages in flight.
                async with aiomqtt_client(settings, max_inflight_messages=100) as client:
                    client.pending_calls_threshold = settings.relay_batch_size * 2
                    logger.info("relay connected to broker")
                    delay = 0.5
                    await relay.drain(pool, client)
            except TRANSIENT_ERRORS as error:
                logger.warning("relay interrupted error=%r retry_in=%.1fs", error, delay)
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, 10)
    finally:
        listener.cancel()
        sampler.cancel()
        await asyncio.gather(listener, sampler, return_exceptions=True)
        await pool.close()
        logger.info("relay stopped")
