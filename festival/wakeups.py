"""Waking the listeners of a transaction's work (relay, pusher) after it commits instead of inside it.

PostgreSQL serialises the commits of all transactions that sent NOTIFY: from its PreCommit_Notify
step each holds one database-wide lock until its commit record is flushed to disk (`async.c`,
PostgreSQL 18). Under load the consumers' commits, each with a NOTIFY from the outbox trigger or
for the pusher, waited in line for each other's disk flushes.

Inside `deferred()` the transaction sets `DEFER_SETTING` (see `defer_setting`), which keeps the
outbox trigger silent (migration 0010), and code that would notify calls `request` instead. After
the commit, `send` notifies every requested channel in a transaction of its own. That transaction
writes nothing that must survive a crash, so it commits without waiting for the disk flush and
holds the lock only for a moment. A process that dies between the commit and `send` leaves the
listeners to their polling, which every listener here does.
"""

import contextlib
import logging
from collections.abc import Iterator
from contextvars import ContextVar

import asyncpg

logger = logging.getLogger(__name__)

# Channel of the relay: an outbox row was committed.
OUTBOX_CHANNEL = "festival_outbox"
# Transaction-local setting (`set_config(..., true)`) that keeps the outbox trigger from notifying.
DEFER_SETTING = "festival.defer_notify"

SEND = (
    "SELECT set_config('synchronous_commit', 'off', true), pg_notify(channel, '')"
    " FROM unnest($1::text[]) AS channel"
)

_requested: ContextVar[set[str] | None] = ContextVar("festival_wakeups", default=None)


def request(channel: str) -> bool:
    """Record `channel` for `send` and return True inside `deferred()`.

    Return False elsewhere: the caller then notifies inside its own transaction.
    """
    requested = _requested.get()
    if requested is None:
        return False
    requested.add(channel)
    return True


def is_deferred() -> bool:
    return _requested.get() is not None


def defer_setting() -> str:
    """Return the value for `DEFER_SETTING` in a transaction started here: "on" inside `deferred()`.

    With "on" the outbox trigger stays silent, so the caller must `send` what it requested.
    """
    return "on" if is_deferred() else "off"


@contextlib.contextmanager
def deferred() -> Iterator[set[str]]:
    """Collect the channels requested in the block, for the caller to send after its commit."""
    requested: set[str] = set()
    token = _requested.set(requested)
    try:
        yield requested
    finally:
        _requested.reset(token)


async def send(connection: asyncpg.Connection, channels: set[str]) -> None:
    """Notify `channels` now, outside any transaction. A failure is only logged, because the listeners also poll."""
    if not channels:
        return
    try:
        await connection.execute(SEND, sorted(channels))
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as error:
        logger.warning("wakeup not sent channels=%s error=%r; listeners will find the work when they poll", sorted(channels), error)
