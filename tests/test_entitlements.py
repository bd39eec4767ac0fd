"""The REDETV!PLUS entitlements client against a fake REDETV!PLUS on 127.0.0.1, and the
push tracking in PostgreSQL."""

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import asyncpg
import pytest
import stamina
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from consumers.entitlements import (
    CircuitBreaker,
    CircuitOpen,
    EntitlementRejected,
    EntitlementsClient,
    EntitlementUnavailable,
    UnknownUser,
    parse_retry_after,
    push_pending,
    record_entitlement,
)
from festival.db import create_pool
from festival.services import free_port
from tests.helpers import wait_until

TOKEN = "redetv-test-token"
UNTIL = datetime(2026, 2, 10, 12, 0, tzinfo=UTC)


@dataclass
class FakeRedetvPlus:
    """A stand-in for the REDETV!PLUS entitlements API that returns the scripted statuses, then 200."""

    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    unknown_users: set[str] = field(default_factory=set)
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    async def put_entitlement(self, request: Request) -> Response:
        user_id = request.path_params["user_id"]
        status, headers = self.script.pop(0) if self.script else (200, {})
        if user_id in self.unknown_users:
            status, headers = 404, {}
        self.requests.append(
            {
                "user_id": user_id,
                "authorization": request.headers.get("authorization"),
                "body": await request.json(),
                "status": status,
            }
        )
        if status == 200:
            return JSONResponse({"ok": True})
        return Response(status_code=status, headers=headers)

    @property
    def successes(self) -> list[dict[str, Any]]:
        return [request for request in self.requests if request["status"] == 200]

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/entitlements/{user_id}", self.put_entitlement, methods=["PUT"])])


@pytest.fixture
async def fake_redetv() -> AsyncIterator[FakeRedetvPlus]:
    fake = FakeRedetvPlus()
    port = free_port()
    config = uvicorn.Config(fake.app(), host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(), name="fake-redetv-plus")

    async def started() -> bool:
        return server.started

    await wait_until(started)
    fake.url = f"http://127.0.0.1:{port}"
    yield fake

    server.should_exit = True
    await task


@pytest.fixture(autouse=True)
def no_backoff() -> Iterator[None]:
    with stamina.set_testing(True, attempts=10, cap=True):
        yield


async def test_push_retries_then_succeeds(fake_redetv: FakeRedetvPlus) -> None:
    fake_redetv.script = [(429, {"Retry-After": "1"}), (503, {}), (503, {}), (503, {})]

    async with EntitlementsClient(fake_redetv.url, TOKEN) as client:
        await client.push("user-1", active=True, until=UNTIL, reason="paid")

    assert len(fake_redetv.requests) == 5
    assert len(fake_redetv.successes) == 1
    success = fake_redetv.successes[0]
    assert success["body"] == {"active": True, "until": "2026-02-10T12:00:00+00:00", "reason": "paid"}
    assert success["user_id"] == "user-1"
    assert success["authorization"] == f"Bearer {TOKEN}"


async def test_push_honours_retry_after(fake_redetv: FakeRedetvPlus) -> None:
    fake_redetv.script = [(429, {"Retry-After": "1"})]
    started = time.monotonic()

    with stamina.set_testing(False):
        async with EntitlementsClient(fake_redetv.url, TOKEN) as client:
            await client.push("user-1", active=True, until=UNTIL, reason="paid")

    assert time.monotonic() - started >= 0.9
    assert len(fake_redetv.successes) == 1


async def test_push_unknown_user(fake_redetv: FakeRedetvPlus) -> None:
    fake_redetv.unknown_users.add("ghost")

    async with EntitlementsClient(fake_redetv.url, TOKEN) as client:
        with pytest.raises(UnknownUser) as error:
            await client.push("ghost", active=False, until=UNTIL, reason="expired")

    assert error.value.user_id == "ghost"
    assert error.value.status == 404
    assert len(fake_redetv.requests) == 1


async def test_push_rejected_not_retried(fake_redetv: FakeRedetvPlus) -> None:
    fake_redetv.script = [(422, {})]

    async with EntitlementsClient(fake_redetv.url, TOKEN) as client:
        with pytest.raises(EntitlementRejected) as error:
            await client.push("user-1", active=True, until=UNTIL, reason="paid")

    assert error.value.status == 422
    assert len(fake_redetv.requests) == 1


async def test_push_gives_up_after_attempts(fake_redetv: FakeRedetvPlus) -> None:
    fake_redetv.script = [(503, {})] * 5

    async with EntitlementsClient(fake_redetv.url, TOKEN, attempts=3) as client:
        with pytest.raises(EntitlementUnavailable) as error:
            await client.push("user-1", active=True, until=UNTIL, reason="paid")

    assert error.value.status == 503
    assert len(fake_redetv.requests) == 3


async def test_push_connection_refused() -> None:
    async with EntitlementsClient(f"http://127.0.0.1:{free_port()}", TOKEN, attempts=2) as client:
        with pytest.raises(EntitlementUnavailable) as error:
            await client.push("user-1", active=True, until=UNTIL, reason="paid")

    assert error.value.status is None
    assert error.value.user_id == "user-1"


async def test_push_rejects_naive_until(fake_redetv: FakeRedetvPlus) -> None:
    async with EntitlementsClient(fake_redetv.url, TOKEN) as client:
        with pytest.raises(ValueError, match="timezone-aware"):
            await client.push("user-1", active=True, until=datetime(2026, 2, 10), reason="paid")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_circuit_opens_and_recovers(fake_redetv: FakeRedetvPlus) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=2, reset_after=30.0, clock=clock)
    fake_redetv.script = [(503, {}), (503, {})]

    async with EntitlementsClient(fake_redetv.url, TOKEN, attempts=1, breaker=breaker) as client:
        for _ in range(2):
            with pytest.raises(EntitlementUnavailable):
                await client.push("user-1", active=True, until=UNTIL, reason="paid")
        assert breaker.state == "open"

        with pytest.raises(CircuitOpen):
            await client.push("user-1", active=True, until=UNTIL, reason="paid")
        assert len(fake_redetv.requests) == 2

        clock.now += 30.0
        assert breaker.state == "half_open"
        await client.push("user-1", active=True, until=UNTIL, reason="paid")

    assert breaker.state == "closed"
    assert len(fake_redetv.successes) == 1


async def test_circuit_trial_failure_reopens(fake_redetv: FakeRedetvPlus) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, reset_after=10.0, clock=clock)
    fake_redetv.script = [(500, {}), (500, {})]

    async with EntitlementsClient(fake_redetv.url, TOKEN, attempts=1, breaker=breaker) as client:
        with pytest.raises(EntitlementUnavailable):
            await client.push("user-1", active=True, until=UNTIL, reason="paid")
        clock.now += 10.0
        with pytest.raises(EntitlementUnavailable):
            await client.push("user-1", active=True, until=UNTIL, reason="paid")

    assert breaker.state == "open"


def test_circuit_half_open_allows_one_trial() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, reset_after=5.0, clock=clock)
    breaker.record_failure()
    clock.now += 5.0

    assert breaker.acquire()
    assert not breaker.acquire()


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("3", 3.0),
        ("120", 30.0),
        (format_datetime(datetime(2026, 1, 1, 12, 0, 10, tzinfo=UTC), usegmt=True), 10.0),
        (format_datetime(datetime(2026, 1, 1, 11, 0, 0, tzinfo=UTC), usegmt=True), 0.0),
        ("soon", None),
        (None, None),
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)

    assert parse_retry_after(header, cap=30.0, now=now) == expected


# ---------------------------------------------------------------------------------------------
# Push tracking.


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, max_size=4)
    yield pool
    await pool.close()


async def record(pool: asyncpg.Pool, version: int, *, active: bool = True, ref: str = "sub-1", user_id: str = "user-1") -> bool:
    async with pool.acquire() as connection:
        return await record_entitlement(
            connection, subscription_ref=ref, user_id=user_id, version=version,
            active=active, until=UNTIL + timedelta(days=version), reason="paid" if active else "expired",
        )


async def test_change_pushed_once(db: asyncpg.Pool, fake_redetv: FakeRedetvPlus) -> None:
    assert await record(db, 1)

    async with EntitlementsClient(fake_redetv.url, TOKEN) as client:
        first = await push_pending(db, client)
        second = await push_pending(db, client)

    assert first.pushed == 1
    assert second.pushed == 0
    assert len(fake_redetv.requests) == 1


async def test_older_version_not_recorded(db: asyncpg.Pool) -> None:
    await record(db, 2)

    assert not await record(db, 1, active=False)
    assert await db.fetchval("SELECT active FROM entitlement_pushes WHERE subscription_ref = 'sub-1'")


async def test_new_version_pushed_again(db: asyncpg.Pool, fake_redetv: FakeRedetvPlus) -> None:
    await record(db, 1)
    async with EntitlementsClient(fake_redetv.url, TOKEN) as client:
        await push_pending(db, client)
        await record(db, 2, active=False)
        report = await push_pending(db, client)

    assert report.pushed == 1
    assert fake_redetv.requests[-1]["body"]["active"] is False


async def test_missed_push_sent_later(db: asyncpg.Pool, fake_redetv: FakeRedetvPlus) -> None:
    await record(db, 1)
    fake_redetv.script = [(503, {})] * 2

    async with EntitlementsClient(fake_redetv.url, TOKEN, attempts=2) as client:
        failed = await push_pending(db, client)
    async with EntitlementsClient(fake_redetv.url, TOKEN) as restarted:
        retried = await push_pending(db, restarted)

    assert failed.unavailable is not None
    assert failed.pushed == 0
    assert retried.pushed == 1
    assert len(fake_redetv.successes) == 1


async def test_unknown_user_reported(db: asyncpg.Pool, fake_redetv: FakeRedetvPlus) -> None:
    await record(db, 1, ref="sub-ghost", user_id="ghost")
    fake_redetv.unknown_users.add("ghost")

    async with EntitlementsClient(fake_redetv.url, TOKEN) as client:
        report = await push_pending(db, client)
        again = await push_pending(db, client)

    assert [(ref, type(error)) for ref, error in report.rejected] == [("sub-ghost", UnknownUser)]
    assert again.rejected == []
    assert len(fake_redetv.requests) == 1


async def test_concurrent_pushers_send_once(db: asyncpg.Pool, fake_redetv: FakeRedetvPlus) -> None:
    for index in range(20):
        await record(db, 1, ref=f"sub-{index}", user_id=f"user-{index}")

    async with EntitlementsClient(fake_redetv.url, TOKEN) as one, EntitlementsClient(fake_redetv.url, TOKEN) as two:
        reports = await asyncio.gather(push_pending(db, one, limit=5), push_pending(db, two, limit=5))
        while (await push_pending(db, one)).pushed:
            pass

    users = [request["user_id"] for request in fake_redetv.requests]
    assert sum(report.pushed for report in reports) == 10
    assert sorted(users) == sorted(f"user-{index}" for index in range(20))
