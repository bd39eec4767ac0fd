"""Client of the REDETV!PLUS entitlements API: `PUT {base_url}/v1/entitlements/{user_id}`.

Exceptions, all carrying `user_id` and `status` (None when no response arrived):

    EntitlementError
    ├── UnknownUser             404: REDETV!PLUS does not know the user; dead-letter the push
    ├── EntitlementRejected     another 4xx: the request is wrong and retrying cannot help
    └── EntitlementUnavailable  retries exhausted on 429, 5xx or connection errors
        └── CircuitOpen         recent pushes failed; no request was sent

The `entitlement_pushes` table keeps, per subscription, the entitlement REDETV!PLUS should have
and the one last sent: `record_entitlement` stores a change in the caller's transaction and
`push_pending` sends what differs, so each change is pushed once and a missed push is sent again
after a restart.

Retries use stamina (exponential backoff with jitter, bounded in attempts and time); a 429 waits
for its `Retry-After`, capped. `stamina.set_testing(True, ...)` removes every wait in tests.
"""

import email.utils
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Literal
from uuid import UUID

import asyncpg
import httpx
import stamina

from consumers.subscription_notices import WORK_CHANNEL
from festival import wakeups
from festival.settings import Settings, SettingsError

logger = logging.getLogger(__name__)


class EntitlementError(Exception):
    def __init__(self, message: str, *, user_id: str, status: int | None = None) -> None:
        super().__init__(message)
        self.user_id = user_id
        self.status = status


class UnknownUser(EntitlementError):
    pass


class EntitlementRejected(EntitlementError):
    pass


class EntitlementUnavailable(EntitlementError):
    pass


class CircuitOpen(EntitlementUnavailable):
    pass


class _RetryableResponse(Exception):
    def __init__(self, status: int, retry_after: float | None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.retry_after = retry_after


def parse_retry_after(value: str | None, *, cap: float, now: datetime | None = None) -> float | None:
    """Return the wait that a `Retry-After` header requests, in seconds within [0, cap].

    The header is either seconds or an HTTP date (RFC 9110). Return None when it is missing or invalid.
    """
    if value is None:
        return None
    value = value.strip()

    if value.isdigit():
        seconds = float(value)
    else:
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        seconds = (moment - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), cap)


class CircuitBreaker:
    """Circuit breaker that fails fast after `failure_threshold` consecutive failures.

    After `reset_after` seconds it lets one trial request through (half-open). A success closes it
    and a failure opens it again.
    """

    def __init__(
        self, *, failure_threshold: int = 5, reset_after: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.failure_threshold = failure_threshold
        self.reset_after = reset_after
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_running = False

    @property
    def state(self) -> Literal["closed", "open", "half_open"]:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.reset_after:
            return "half_open"
        return "open"

    def acquire(self) -> bool:
        """Return whether a request may go out now, taking the trial slot when half-open."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._trial_running:
            self._trial_running = True
            return True
        return False

    def record_success(self) -> None:
        if self._opened_at is not None:
            logger.info("entitlements circuit closed")
        self._failures = 0
        self._opened_at = None
        self._trial_running = False

    def record_failure(self) -> None:
        self._failures += 1
        reopen = self._trial_running
        self._trial_running = False
        if reopen or (self._opened_at is None and self._failures >= self.failure_threshold):
            self._opened_at = self._clock()
            logger.warning("entitlements circuit opened failures=%s reset_after=%.1fs", self._failures, self.reset_after)

    def release(self) -> None:
        """Give the trial slot back after an attempt that neither failed nor succeeded."""
        self._trial_running = False


class EntitlementsClient:
    """Pushes a subscriber's entitlement to REDETV!PLUS. Use as an async context manager."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        attempts: int = 6,
        retry_timeout: float = 60.0,
        max_retry_after: float = 30.0,
        request_timeout: float = 10.0,
        breaker: CircuitBreaker | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.attempts = attempts
        self.retry_timeout = retry_timeout
        self.max_retry_after = max_retry_after
        self.breaker = breaker or CircuitBreaker()
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=request_timeout,
            transport=transport,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> "EntitlementsClient":
        if not settings.redetv_api_url or settings.redetv_api_token is None:
            raise SettingsError(
                "FESTIVAL_REDETV_API_URL and FESTIVAL_REDETV_API_TOKEN must be set to push entitlements"
            )
        return cls(settings.redetv_api_url, settings.redetv_api_token.get_secret_value())

    async def __aenter__(self) -> "EntitlementsClient":
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def push(self, user_id: str, *, active: bool, until: datetime, reason: str) -> None:
        """Send one entitlement, retrying throttling, 5xx and connection errors within the bounds."""
        if until.tzinfo is None:
            raise ValueError(f"until must be timezone-aware, got {until.isoformat()}")
        body = {"active": active, "until": until.isoformat(), "reason": reason}

        try:
            async for attempt in stamina.retry_context(
                on=self._backoff,
                attempts=self.attempts,
                timeout=self.retry_timeout,
                wait_initial=0.2,
                wait_max=10.0,
                wait_jitter=1.0,
            ):
                with attempt:
                    await self._put_once(user_id, body, attempt.num)
        except _RetryableResponse as error:
            logger.error("entitlement push gave up user_id=%s status=%s attempts=%s", user_id, error.status, self.attempts)
            raise EntitlementUnavailable(
                f"REDETV!PLUS returned {error.status} for user {user_id} on the last attempt; push it again later",
                user_id=user_id,
                status=error.status,
            ) from error
        except httpx.TransportError as error:
            logger.error("entitlement push gave up user_id=%s error=%r", user_id, error)
            raise EntitlementUnavailable(
                f"could not reach REDETV!PLUS for user {user_id}: {error!r}; push it again later", user_id=user_id
            ) from error

        logger.info("entitlement pushed user_id=%s active=%s until=%s reason=%s", user_id, active, body["until"], reason)

    def _backoff(self, error: Exception) -> bool | float:
        """Tell stamina whether to retry, and for a 429 how long to wait."""
        if isinstance(error, _RetryableResponse):
            return error.retry_after if error.retry_after is not None else True
        return isinstance(error, httpx.TransportError)

    async def _put_once(self, user_id: str, body: dict[str, object], attempt: int) -> None:
        if not self.breaker.acquire():
            raise CircuitOpen(
                f"entitlements circuit is open after repeated failures; user {user_id} not pushed, try again later",
                user_id=user_id,
            )

        try:
            response = await self._client.put(f"/v1/entitlements/{user_id}", json=body)
        except httpx.TransportError as error:
            self.breaker.record_failure()
            logger.warning("entitlement push failed user_id=%s attempt=%s error=%r", user_id, attempt, error)
            raise

        status = response.status_code
        if 200 <= status < 300:
            self.breaker.record_success()
            return
        if status == 429:
            # Throttling means the service is up: it does not count towards opening the circuit.
            self.breaker.release()
            retry_after = parse_retry_after(response.headers.get("Retry-After"), cap=self.max_retry_after)
            logger.warning("entitlement push throttled user_id=%s attempt=%s retry_after=%s", user_id, attempt, retry_after)
            raise _RetryableResponse(status, retry_after)
        if status >= 500:
            self.breaker.record_failure()
            logger.warning("entitlement push failed user_id=%s attempt=%s status=%s", user_id, attempt, status)
            raise _RetryableResponse(status, None)

        self.breaker.record_success()
        if status == 404:
            raise UnknownUser(f"REDETV!PLUS does not know user {user_id} (404)", user_id=user_id, status=status)
        raise EntitlementRejected(
            f"REDETV!PLUS rejected the entitlement of user {user_id} with {status}: {response.text[:200]}",
            user_id=user_id,
            status=status,
        )


# ---------------------------------------------------------------------------------------------
# Tracking pushes in PostgreSQL.

# A claimed row is left to its pusher this long, then another pusher may take it over. It exceeds
# one push with the client's defaults (60 s of retries plus a 10 s request).
CLAIM_SECONDS = 120


async def record_entitlement(
    connection: asyncpg.Connection,
    *,
    subscription_ref: str,
    user_id: str,
    version: int,
    active: bool,
    until: datetime,
    reason: str,
) -> bool:
    """Store the entitlement REDETV!PLUS should have, unless a newer version is stored already.

    Return whether a push is pending. Call it in the transaction that stores the subscription.
    """
    pending: bool | None = await connection.fetchval(
        """
        INSERT INTO entitlement_pushes AS p (subscription_ref, user_id, version, active, until, reason)
        VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT (subscription_ref) DO UPDATE
            SET user_id = EXCLUDED.user_id, version = EXCLUDED.version, active = EXCLUDED.active,
                until = EXCLUDED.until, reason = EXCLUDED.reason, rejected_at = NULL,
                updated_at = now()
            WHERE p.version < EXCLUDED.version
        RETURNING pending
        """,
        subscription_ref, user_id, version, active, until, reason,
    )
    return bool(pending)


# The upsert of `record_entitlement` and the link to the event that recorded it, in one
# statement: a newer version replaces the wanted value and clears a rejection. A replay of the
# event whose push was rejected clears the rejection too. The event becomes the row's event unless
# the row stays rejected for another event, which keeps the rejected push pointing at its event.
# The pusher is woken when a push is due: on commit, or after it inside `wakeups.deferred()`.
RECORD_OF_EVENT = """
WITH saved AS (
    INSERT INTO entitlement_pushes AS p (subscription_ref, user_id, version, active, until, reason, event_id)
    VALUES ($1, $2, $3, $4, $5, $6, $7)
    ON CONFLICT (subscription_ref) DO UPDATE SET
        user_id = CASE WHEN p.version < EXCLUDED.version THEN EXCLUDED.user_id ELSE p.user_id END,
        active = CASE WHEN p.version < EXCLUDED.version THEN EXCLUDED.active ELSE p.active END,
        until = CASE WHEN p.version < EXCLUDED.version THEN EXCLUDED.until ELSE p.until END,
        reason = CASE WHEN p.version < EXCLUDED.version THEN EXCLUDED.reason ELSE p.reason END,
        updated_at = CASE WHEN p.version < EXCLUDED.version THEN now() ELSE p.updated_at END,
        rejected_at = CASE WHEN p.version < EXCLUDED.version OR p.event_id = EXCLUDED.event_id
                           THEN NULL ELSE p.rejected_at END,
        event_id = CASE WHEN p.version < EXCLUDED.version OR p.rejected_at IS NULL OR p.event_id = EXCLUDED.event_id
                        THEN EXCLUDED.event_id ELSE p.event_id END,
        version = GREATEST(p.version, EXCLUDED.version)
    RETURNING p.pending, p.pending AND p.rejected_at IS NULL AS pushable
)
SELECT pending, pushable, CASE WHEN pushable AND $9 THEN pg_notify($8, $1)::text END AS woken FROM saved
"""


async def record_entitlement_of_event(
    connection: asyncpg.Connection,
    *,
    subscription_ref: str,
    user_id: str,
    version: int,
    active: bool,
    until: datetime,
    reason: str,
    event_id: UUID,
) -> tuple[bool, bool]:
    """Store the entitlement like `record_entitlement` and link it to `event_id`, the
    `subscriptions/changed` event it is recorded from, so that a rejected push can be dead-lettered
    against that event and replayed.

    Return (pending, pushable): whether the row differs from what was sent, and whether the pusher
    will send it (not rejected). Call it in the transaction that stores the subscription.
    """
    notify_now = not wakeups.is_deferred()
    row = await connection.fetchrow(
        RECORD_OF_EVENT, subscription_ref, user_id, version, active, until, reason, event_id, WORK_CHANNEL, notify_now
    )
    if row["pushable"]:
        wakeups.request(WORK_CHANNEL)
    return bool(row["pending"]), bool(row["pushable"])


@dataclass
class PushReport:
    pushed: int = 0
    # Pushes REDETV!PLUS rejected (UnknownUser, EntitlementRejected): the caller dead-letters them.
    rejected: list[tuple[str, EntitlementError]] = field(default_factory=list)
    # Set when REDETV!PLUS is unavailable; the remaining rows stay pending for the next run.
    unavailable: EntitlementUnavailable | None = None


async def push_pending(pool: asyncpg.Pool, client: EntitlementsClient, *, limit: int = 100) -> PushReport:
    """Push up to `limit` entitlements whose wanted value differs from the last one sent.

    Each row is claimed in its own short transaction just before its push. A slow REDETV!PLUS
    therefore never holds a lock that the consumers' transactions wait on, and two pushers do not
    send one change twice while its claim lasts.
    """
    report = PushReport()
    for _ in range(limit):
        row = await pool.fetchrow(
            """
            UPDATE entitlement_pushes SET claimed_until = now() + make_interval(secs => $1)
            WHERE subscription_ref = (
                SELECT subscription_ref FROM entitlement_pushes
                WHERE pending AND (claimed_until IS NULL OR claimed_until < now())
                ORDER BY updated_at LIMIT 1 FOR UPDATE SKIP LOCKED)
            RETURNING subscription_ref, user_id, active, until, reason
            """,
            CLAIM_SECONDS,
        )
        if row is None:
            break

        ref = row["subscription_ref"]
        try:
            await client.push(row["user_id"], active=row["active"], until=row["until"], reason=row["reason"])
        except (UnknownUser, EntitlementRejected) as error:
            logger.error("entitlement push rejected subscription_ref=%s user_id=%s status=%s", ref, error.user_id, error.status)
            report.rejected.append((ref, error))
            await _finish(pool, ref, error=error)
            continue
        except EntitlementUnavailable as error:
            logger.warning("entitlement pushes paused subscription_ref=%s user_id=%s error=%s", ref, error.user_id, error)
            report.unavailable = error
            await _finish(pool, ref, error=error)
            break

        report.pushed += 1
        await _finish(pool, ref, sent=(row["active"], row["until"], row["reason"]))
    return report


async def _finish(
    pool: asyncpg.Pool,
    ref: str,
    *,
    sent: tuple[bool, datetime, str] | None = None,
    error: EntitlementError | None = None,
) -> None:
    if sent is not None:
        await pool.execute(
            "UPDATE entitlement_pushes SET sent_active = $2, sent_until = $3, sent_reason = $4,"
            " sent_at = now(), last_error = NULL, claimed_until = NULL WHERE subscription_ref = $1",
            ref, *sent,
        )
        return

    rejected = isinstance(error, UnknownUser | EntitlementRejected)
    await pool.execute(
        "UPDATE entitlement_pushes SET attempts = attempts + 1, last_error = $2, claimed_until = NULL,"
        " rejected_at = CASE WHEN $3 THEN now() ELSE rejected_at END WHERE subscription_ref = $1",
        ref, str(error), rejected,
    )
