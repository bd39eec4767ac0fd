"""Applying the events that arrive while a delivery transaction runs together, in the next one.

A delivery transaction costs a BEGIN, a claim and a COMMIT (with its WAL flush) whatever it
applies. Under load, events queue here while one transaction runs, and the next transaction claims
them all in one statement, takes their lock keys in sorted order, applies each in its own trace
context and commits once. Each event is still applied exactly once, because its claim and its
effects commit together or not at all. Any error rolls the whole batch back, and its events are then applied one
by one through `DeliveryHandler.apply_alone`, which records failures and dead letters as usual.

Up to `CONCURRENT_BATCHES` transactions run at once. Every batch claims its deliveries first and
then takes all its lock keys, in one order shared by all batches, before applying its first event,
so two batches (or a batch and a lone event) cannot wait for each other's keys; a lock the effects
take later (a draw's row) comes after all keys in every batch. A lone event, the usual case at low
load, takes exactly the path it takes without batching.
"""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar
from uuid import UUID

import asyncpg
from opentelemetry import context as otel_context

from broker.envelope import Envelope
from festival import telemetry
from festival.wakeups import send as send_wakeups

logger = logging.getLogger(__name__)

# Events one transaction applies at most.
MAX_BATCH = 32
# Batch transactions that run at once. Under load a round trip waits for the CPU, so one batch at
# a time would cap the throughput at the batch size per a few dozen round trips.
CONCURRENT_BATCHES = 2

# Claims the pending deliveries among the events and sets the transaction's wakeup mode, as
# `consumers.delivery.CLAIM` does for one event.
CLAIM_MANY = """
WITH claimed AS (
    UPDATE deliveries SET status = 'applied', applied_at = now(), last_error = NULL
    WHERE event_id = ANY($1::uuid[]) AND consumer = $2 AND status = 'pending'
    RETURNING event_id
)
SELECT event_id, set_config('festival.defer_notify', $3, true) FROM claimed
"""

# Transaction-level advisory locks, taken in the order of the array.
LOCK_MANY = "SELECT count(pg_advisory_xact_lock(hashtextextended(key, 0))) FROM unnest($1::text[]) AS key"


Outcome = TypeVar("Outcome")


@dataclass
class Queued(Generic[Outcome]):
    envelope: Envelope
    topic: str
    lock_key: str
    # The trace context of the event's process span, current while its effects are written.
    context: otel_context.Context
    outcome: "asyncio.Future[Outcome]"


ApplyOne = Callable[[asyncpg.Connection, Envelope], Awaitable[None]]


@contextlib.contextmanager
def _current(context: otel_context.Context) -> Iterator[None]:
    token = otel_context.attach(context)
    try:
        yield
    finally:
        otel_context.detach(token)


class Batcher(Generic[Outcome]):
    """Queues events of one consumer and applies them in as few transactions as the load allows.

    `apply_one` writes one event's effects in the caller's transaction. `apply_alone` applies one
    event in its own transaction, with the claim, retries and failure records, and returns its
    outcome. `applied` is the outcome of an event applied in a batch, `wakeups` opens the block
    whose requested wakeups are sent after the commit, and `defer_setting` is the value of
    `festival.defer_notify` in that transaction. The batch tasks run only while events are
    queued, and `close` cancels them.
    """

    def __init__(
        self,
        consumer: str,
        pool: asyncpg.Pool,
        apply_one: ApplyOne,
        apply_alone: Callable[[Envelope, str], Awaitable[Outcome]],
        applied: Outcome,
        wakeups: Callable[[], contextlib.AbstractContextManager[set[str]]],
        defer_setting: str,
    ) -> None:
        self.consumer = consumer
        self.pool = pool
        self.apply_one = apply_one
        self.apply_alone = apply_alone
        self.applied = applied
        self.wakeups = wakeups
        self.defer_setting = defer_setting
        self._queue: list[Queued[Outcome]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, envelope: Envelope, topic: str, lock_key: str) -> Outcome:
        """Queue one event and return its outcome once the transaction that applied it ended."""
        outcome: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._queue.append(Queued(envelope, topic, lock_key, otel_context.get_current(), outcome))
        if len(self._tasks) < CONCURRENT_BATCHES:
            task = asyncio.create_task(self._run(), name=f"{self.consumer}-delivery-batches")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await outcome

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self) -> None:
        batch: list[Queued[Outcome]] = []
        try:
            while self._queue:
                batch = self._queue[:MAX_BATCH]
                del self._queue[:MAX_BATCH]
                try:
                    outcomes = await self._apply(batch)
                except Exception as error:
                    # Raised where a lone event would raise too: its handler gets the error.
                    for queued in batch:
                        if not queued.outcome.done():
                            queued.outcome.set_exception(error)
                    continue
                for queued, outcome in zip(batch, outcomes, strict=True):
                    if not queued.outcome.done():
                        queued.outcome.set_result(outcome)
        except asyncio.CancelledError:
            # The deliveries not committed stay pending and the relay publishes them again.
            for queued in [*batch, *self._queue]:
                if not queued.outcome.done():
                    queued.outcome.cancel()
            self._queue.clear()
            raise
        finally:
            # Leave the set before yielding to the loop. A done callback runs too late: a `submit`
            # in between would count this task as running and queue an event that no task takes.
            self._tasks.discard(asyncio.current_task())  # type: ignore[arg-type]

    async def _apply(self, batch: list[Queued[Outcome]]) -> list[Outcome]:
        if len(batch) == 1:
            return [await self._apply_alone(batch[0])]

        # A copy of an event already in the batch finds it applied afterwards.
        first_copies: dict[UUID, Queued[Outcome]] = {}
        for queued in batch:
            first_copies.setdefault(queued.envelope.id, queued)
        ordered = sorted(first_copies.values(), key=lambda queued: queued.lock_key)

        try:
            claimed = await self._apply_together(ordered)
        except Exception as error:
            logger.warning(
                "batch failed; applying its events one by one consumer=%s count=%d error=%r",
                self.consumer, len(ordered), error,
            )
            claimed = set()

        outcomes: list[Outcome] = []
        for queued in batch:
            if first_copies[queued.envelope.id] is queued and queued.envelope.id in claimed:
                outcomes.append(self.applied)
            else:
                outcomes.append(await self._apply_alone(queued))
        return outcomes

    async def _apply_together(self, ordered: list[Queued[Outcome]]) -> set[UUID]:
        """Claim and apply `ordered` in one transaction, and return the ids applied.

        An event whose delivery is not pending (a duplicate, or untracked) is left out here.
        """
        ids = [queued.envelope.id for queued in ordered]
        # The batch's own statements belong to no single event's trace.
        with telemetry.suppressed(), self.wakeups() as channels:
            async with self.pool.acquire() as connection:
                async with connection.transaction():
                    rows = await connection.fetch(CLAIM_MANY, ids, self.consumer, self.defer_setting)
                    claimed = {row["event_id"] for row in rows}
                    keys = sorted({queued.lock_key for queued in ordered if queued.envelope.id in claimed})
                    if keys:
                        await connection.execute(LOCK_MANY, keys)

                    for queued in ordered:
                        if queued.envelope.id in claimed:
                            with _current(queued.context):
                                await self.apply_one(connection, queued.envelope)
                await send_wakeups(connection, channels)
        logger.debug("batch applied consumer=%s count=%d", self.consumer, len(claimed))
        return claimed

    async def _apply_alone(self, queued: Queued[Outcome]) -> Outcome:
        with _current(queued.context):
            return await self.apply_alone(queued.envelope, queued.topic)
