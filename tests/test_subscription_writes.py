"""The one-round-trip steps of the consumers: locking and loading, recording a payment, reserving
lucky numbers, writing a change, and linking an entitlement to its event."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest

from consumers import lucky_numbers
from consumers.entitlements import record_entitlement_of_event
from consumers.subscription_store import lock_and_load
from consumers.subscription_writes import SubscriptionWrite
from festival.db import create_pool
from festival.domain.subscriptions import state_to_json
from festival.outbox import Outbox, envelope_for
from festival.settings import Settings
from schemas.events import SubscriptionChanged
from tests.pipeline import create_open_draw, create_subscriptions

RECORD = "SELECT status, evidence FROM record_confirmed_payment($1, $2, $3, 'card', $4, now())"


def _log_queries(connection: asyncpg.Connection, sent: list[str]) -> None:
    """Append every statement `connection` sends to `sent`.

    asyncpg calls query loggers with `call_soon`, so a test yields to the loop once before counting.
    """
    connection.add_query_logger(lambda record: sent.append(record.query))


async def _stored_payment(connection: asyncpg.Connection, ref: str, charge_id: str) -> None:
    await connection.fetchrow(RECORD, charge_id, ref, uuid.uuid4(), Decimal("29.90"))


async def test_lock_reads_after_wait(settings: Settings, pool: asyncpg.Pool) -> None:
    await create_subscriptions(pool, settings, "sub-1")
    async with pool.acquire() as holder, pool.acquire() as waiter:
        holder_transaction = holder.transaction()
        await holder_transaction.start()
        state = await lock_and_load(holder, "sub-1")
        assert state is not None
        changed = {**state_to_json(state), "version": state.version + 1}
        await holder.execute("UPDATE subscriptions SET evidence = $2 WHERE ref = $1", "sub-1", changed)

        async with waiter.transaction():
            waiting = asyncio.create_task(lock_and_load(waiter, "sub-1"), name="lock-waiter")
            await asyncio.sleep(0.2)
            blocked = not waiting.done()
            await holder_transaction.commit()
            seen = await asyncio.wait_for(waiting, timeout=10)

    assert blocked
    assert seen is not None
    assert seen.version == state.version + 1


async def test_lock_unknown_subscription(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as connection, connection.transaction():
        state = await lock_and_load(connection, "sub-unknown")

    assert state is None


async def test_payment_recorded_once(settings: Settings, pool: asyncpg.Pool) -> None:
    await create_subscriptions(pool, settings, "sub-1")
    async with pool.acquire() as connection:
        first = await connection.fetchrow(RECORD, "ch_1", "sub-1", uuid.uuid4(), Decimal("29.90"))
        second = await connection.fetchrow(RECORD, "ch_1", "sub-1", uuid.uuid4(), Decimal("29.90"))

    assert first["status"] == "confirmed"
    assert first["evidence"]["subscription_ref"] == "sub-1"
    assert second["status"] is None
    assert await pool.fetchval("SELECT count(*) FROM payments WHERE charge_id = 'ch_1'") == 1


@pytest.mark.parametrize(("refund_status", "expected"), [("DEVOLVIDO", "refunded"), ("CHARGEBACK", "charged_back")])
async def test_payment_after_settled_refund(pool: asyncpg.Pool, refund_status: str, expected: str) -> None:
    await pool.execute(
        "INSERT INTO refunds (refund_id, charge_id, amount, status, updated_at) VALUES ('rf_1', 'ch_1', 29.90, $1, now())",
        refund_status,
    )
    async with pool.acquire() as connection:
        row = await connection.fetchrow(RECORD, "ch_1", "sub-1", uuid.uuid4(), Decimal("29.90"))

    assert row["status"] == expected
    assert row["evidence"] is None
    assert await pool.fetchval("SELECT status FROM payments WHERE charge_id = 'ch_1'") == expected


async def test_reserve_without_draw_waits(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as connection, connection.transaction():
        await _stored_payment(connection, "sub-1", "ch_1")
        reservation = await lucky_numbers.reserve(connection, "ch_1", "sub-1", 2)

    assert reservation == lucky_numbers.Reservation(None, [])
    assert await pool.fetchval("SELECT quantity FROM lucky_number_grants WHERE charge_id = 'ch_1' AND draw_id IS NULL") == 2


async def test_reserve_in_open_draw(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as connection, connection.transaction():
        draw_id = await create_open_draw(connection)
        await _stored_payment(connection, "sub-1", "ch_1")
        await _stored_payment(connection, "sub-1", "ch_2")
        first = await lucky_numbers.reserve(connection, "ch_1", "sub-1", 3)
        second = await lucky_numbers.reserve(connection, "ch_2", "sub-1", 2)

    assert first is not None
    assert second is not None
    assert first.draw_id == draw_id
    assert first.draw_title == "Sorteio de teste"
    assert len(first.numbers) == 3
    assert len(set(first.numbers + second.numbers)) == 5
    assert await pool.fetchval("SELECT issued_count FROM draws WHERE id = $1", draw_id) == 5
    assert await pool.fetchval("SELECT count(*) FROM lucky_number_grants WHERE draw_id = $1", draw_id) == 2


async def test_reserve_once_per_charge(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as connection, connection.transaction():
        draw_id = await create_open_draw(connection)
        await _stored_payment(connection, "sub-1", "ch_1")
        first = await lucky_numbers.reserve(connection, "ch_1", "sub-1", 1)
        again = await lucky_numbers.reserve(connection, "ch_1", "sub-1", 1)

    assert first is not None
    assert again is None
    assert await pool.fetchval("SELECT issued_count FROM draws WHERE id = $1", draw_id) == 1


async def test_reserve_refunded_charge(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as connection, connection.transaction():
        draw_id = await create_open_draw(connection)
        await _stored_payment(connection, "sub-1", "ch_1")
        await connection.execute("UPDATE payments SET status = 'refunded' WHERE charge_id = 'ch_1'")
        reservation = await lucky_numbers.reserve(connection, "ch_1", "sub-1", 1)

    assert reservation is None
    assert await pool.fetchval("SELECT issued_count FROM draws WHERE id = $1", draw_id) == 0
    assert await pool.fetchval("SELECT count(*) FROM lucky_number_grants") == 0


async def test_write_one_statement(settings: Settings, pool: asyncpg.Pool) -> None:
    sent: list[str] = []
    await create_subscriptions(pool, settings, "sub-1")
    async with pool.acquire() as connection, connection.transaction():
        draw_id = await create_open_draw(connection)
        await _stored_payment(connection, "sub-1", "ch_1")
        state = await lock_and_load(connection, "sub-1")
        assert state is not None
        changed = SubscriptionChanged(
            subscription_ref="sub-1", user_id=state.user_id, status=state.status, previous_status=None,
            current_period_end=None, version=state.version, reason="test", lucky_numbers_issued=2,
        )
        write = SubscriptionWrite("sub-1", state=state, history=(uuid.uuid4(), None, "test", datetime.now(UTC), "created"))
        envelope = envelope_for(changed, source="/tests", subject="sub-1")
        write.event = Outbox.from_settings(settings).row(changed.TOPIC, envelope)
        write.issue_numbers(draw_id, "ch_1", [11, 22])
        write.notices.append(("payment_confirmed", "Pagamento confirmado"))
        _log_queries(connection, sent)
        await write.write(connection)
        await asyncio.sleep(0)
        statements = len(sent)

    assert statements == 1
    assert await pool.fetchval("SELECT count(*) FROM subscription_history WHERE reason = 'test'") == 1
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE event_id = $1", envelope.id) == 1
    assert await pool.fetchval("SELECT consumer FROM deliveries WHERE event_id = $1", envelope.id) == "subscriptions"
    assert await pool.fetchval("SELECT array_agg(number ORDER BY number) FROM lucky_numbers WHERE charge_id = 'ch_1'") == [11, 22]
    assert await pool.fetchval("SELECT body FROM notifications WHERE subscription_ref = 'sub-1'") == "Pagamento confirmado"


async def test_empty_write_sends_nothing(db: asyncpg.Connection) -> None:
    sent: list[str] = []
    _log_queries(db, sent)

    await SubscriptionWrite("sub-1").write(db)
    await asyncio.sleep(0)

    assert sent == []


UNTIL = datetime(2026, 3, 1, tzinfo=UTC)


async def _link(pool: asyncpg.Pool, version: int, event_id: uuid.UUID, *, active: bool = True) -> tuple[bool, bool]:
    async with pool.acquire() as connection:
        return await record_entitlement_of_event(
            connection, subscription_ref="sub-1", user_id="user-1", version=version, active=active,
            until=UNTIL + timedelta(days=version), reason="paid", event_id=event_id,
        )


async def _reject(pool: asyncpg.Pool) -> None:
    await pool.execute("UPDATE entitlement_pushes SET rejected_at = now() WHERE subscription_ref = 'sub-1'")


async def test_link_new_entitlement(pool: asyncpg.Pool) -> None:
    event_id = uuid.uuid4()

    pending, pushable = await _link(pool, 1, event_id)

    assert pending
    assert pushable
    assert await pool.fetchval("SELECT event_id FROM entitlement_pushes") == event_id


async def test_link_keeps_rejected_event(pool: asyncpg.Pool) -> None:
    rejected_event = uuid.uuid4()
    await _link(pool, 1, rejected_event)
    await _reject(pool)

    pending, pushable = await _link(pool, 1, uuid.uuid4())

    assert not pending
    assert not pushable
    assert await pool.fetchval("SELECT event_id FROM entitlement_pushes") == rejected_event


async def test_link_replay_clears_rejection(pool: asyncpg.Pool) -> None:
    rejected_event = uuid.uuid4()
    await _link(pool, 1, rejected_event)
    await _reject(pool)

    _, pushable = await _link(pool, 1, rejected_event)

    assert pushable
    assert await pool.fetchval("SELECT rejected_at FROM entitlement_pushes") is None


async def test_link_newer_version_clears_rejection(pool: asyncpg.Pool) -> None:
    await _link(pool, 1, uuid.uuid4())
    await _reject(pool)
    newer_event = uuid.uuid4()

    _, pushable = await _link(pool, 2, newer_event, active=False)

    row = await pool.fetchrow("SELECT event_id, version, active, rejected_at FROM entitlement_pushes")
    assert pushable
    assert row["event_id"] == newer_event
    assert row["version"] == 2
    assert row["active"] is False
    assert row["rejected_at"] is None


async def test_link_older_version_ignored(pool: asyncpg.Pool) -> None:
    await _link(pool, 2, uuid.uuid4())

    await _link(pool, 1, uuid.uuid4(), active=False)

    row = await pool.fetchrow("SELECT version, active FROM entitlement_pushes")
    assert row["version"] == 2
    assert row["active"] is True


async def test_kept_session_rolls_back(settings: Settings) -> None:
    pool = await create_pool(settings.require_database_url(), min_size=1, max_size=1, reset_session=False)
    try:
        async with pool.acquire() as connection:
            await connection.execute("BEGIN")
            await connection.execute("INSERT INTO refunds VALUES ('rf_open', 'ch_1', 1, 'DEVOLVIDO', now())")
        async with pool.acquire() as connection:
            in_transaction = connection.is_in_transaction()
            leftover = await connection.fetchval("SELECT count(*) FROM refunds")
    finally:
        await pool.close()

    assert not in_transaction
    assert leftover == 0
