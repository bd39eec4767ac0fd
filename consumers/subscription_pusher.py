"""The subscriptions consumer's background work: entitlement pushes and subscriber notifications.

One instance at a time pushes: the leader holds a session-level advisory lock on a dedicated
connection. If its process dies, PostgreSQL drops the connection and the lock with it, so a
standby takes over at once and knows that any claim left in `entitlement_pushes` belongs to a dead
pusher. It releases those claims, and the interrupted push is sent again (PUT is idempotent).

The leader wakes on `NOTIFY festival_subscription_work` (sent only when the transaction that
recorded the work commits), `COALESCE_SECONDS` later, and every `POLL_SECONDS`, which retries
what failed before.
"""

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

import asyncpg

from broker import topics
from broker.envelope import Envelope, event_type
from consumers.entitlements import EntitlementError, EntitlementsClient, push_pending
from consumers.subscription_notices import WORK_CHANNEL
from festival.db import connect
from festival.notifications import LogSender, NotificationSender, dispatch_pending
from festival.outbox import Outbox
from festival.settings import Settings

logger = logging.getLogger(__name__)

CONSUMER = "subscriptions"
PUSHER_LOCK_KEY = 7_405_113_202
POLL_SECONDS = 5.0
# Work is notified once per committed transaction. Waiting this long after a wakeup lets one run
# take the work of many transactions under load, for at most this delay on each push and message.
COALESCE_SECONDS = 0.05

RELEASE_ORPHAN_CLAIMS = "UPDATE entitlement_pushes SET claimed_until = NULL WHERE claimed_until IS NOT NULL"


async def run_pusher(settings: Settings, pool: asyncpg.Pool, sender: NotificationSender | None = None) -> None:
    """Push entitlements and dispatch notifications until cancelled, as leader or standby."""
    client = _client(settings)
    pusher = Pusher(settings, pool, client, sender or LogSender())
    try:
        while True:
            try:
                await pusher.lead()
            except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError) as error:
                logger.warning("entitlement pusher lost the database error=%r; retrying in %.0fs", error, POLL_SECONDS)
            except Exception:
                logger.exception("entitlement pusher failed; retrying in %.0fs", POLL_SECONDS)
            await asyncio.sleep(POLL_SECONDS)
    finally:
        if client is not None:
            await client.aclose()
        logger.info("entitlement pusher stopped")


def _client(settings: Settings) -> EntitlementsClient | None:
    if not settings.redetv_api_url or settings.redetv_api_token is None:
        logger.warning(
            "entitlement pushes disabled: FESTIVAL_REDETV_API_URL or FESTIVAL_REDETV_API_TOKEN is not set;"
            " wanted entitlements stay pending in the database"
        )
        return None
    return EntitlementsClient.from_settings(settings)


class Pusher:
    def __init__(
        self, settings: Settings, pool: asyncpg.Pool, client: EntitlementsClient | None, sender: NotificationSender
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.client = client
        self.sender = sender
        self.outbox = Outbox.from_settings(settings)
        self.wake = asyncio.Event()

    async def lead(self) -> None:
        """Wait to become the leader, then work until the dedicated connection fails or the task is cancelled."""
        connection = await connect(self.settings.require_database_url())
        try:
            await connection.add_listener(WORK_CHANNEL, self._on_notify)
            while not await connection.fetchval("SELECT pg_try_advisory_lock($1)", PUSHER_LOCK_KEY):
                await self._sleep()

            released = await connection.execute(RELEASE_ORPHAN_CLAIMS)
            logger.info("entitlement pusher leading released_claims=%s", released.split()[-1])
            while True:
                self.wake.clear()
                await self.run_once()
                await self._sleep()
                await asyncio.sleep(COALESCE_SECONDS)
                # Leadership lives with this connection: stop leading as soon as it breaks.
                await connection.fetchval("SELECT 1")
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), timeout=5)

    def _on_notify(self, *_: object) -> None:
        self.wake.set()

    async def _sleep(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), POLL_SECONDS)

    async def run_once(self) -> None:
        """Push every pending entitlement, dead-letter the rejected ones, then send notifications."""
        if self.client is not None:
            report = await push_pending(self.pool, self.client)
            for subscription_ref, error in report.rejected:
                await self.dead_letter(subscription_ref, error)
            if report.pushed:
                logger.info("entitlements pushed count=%d", report.pushed)

        sent = await dispatch_pending(self.pool, self.sender)
        if sent:
            logger.info("notifications dispatched count=%d", sent)

    async def dead_letter(self, subscription_ref: str, error: EntitlementError) -> None:
        """Record a push REDETV!PLUS rejected as a dead letter of the event it was recorded from."""
        reason = f"{type(error).__name__}: {error}"[:1000]
        topic = topics.absolute(self.settings.topic_root, topics.SUBSCRIPTIONS_CHANGED)
        async with self.pool.acquire() as connection, connection.transaction():
            event_id = await connection.fetchval(
                "SELECT event_id FROM entitlement_pushes WHERE subscription_ref = $1", subscription_ref
            )
            if event_id is None:
                logger.error("rejected push has no event to dead-letter subscription_ref=%s reason=%s", subscription_ref, reason)
                return

            attempts = await connection.fetchval(
                "UPDATE deliveries SET status = 'dead', last_error = $3 WHERE event_id = $1 AND consumer = $2"
                " RETURNING attempts + 1",
                event_id, CONSUMER, reason,
            )
            dead_letter_id = await connection.fetchval(
                "INSERT INTO dead_letters (event_id, consumer, topic, error, attempts) VALUES ($1, $2, $3, $4, $5)"
                " RETURNING id",
                event_id, CONSUMER, topic, reason, attempts or 1,
            )
            notice = Envelope(
                source=f"/consumers/{CONSUMER}",
                type=event_type("dead_letter.recorded"),
                subject=str(event_id),
                time=datetime.now(UTC),
                data={
                    "dead_letter_id": dead_letter_id,
                    "consumer": CONSUMER,
                    "event_id": str(event_id),
                    "event_type": event_type("subscription.changed"),
                    "attempts": attempts or 1,
                    "error": reason,
                },
            )
            await self.outbox.enqueue(connection, topics.dead_letters(CONSUMER), notice)
        logger.error(
            "entitlement push dead-lettered subscription_ref=%s event_id=%s dead_letter_id=%s status=%s",
            subscription_ref, event_id, dead_letter_id, error.status,
        )
