"""Subscriber notifications: Portuguese texts, the outbox table and the dispatcher."""

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
import pytest

from festival import notifications
from festival.db import create_pool
from festival.notifications import (
    CapturingSender,
    LogSender,
    Notification,
    dispatch_pending,
    enqueue,
    format_brl,
)

# 02:30 UTC on 11 Feb is still 10 Feb in Brasília.
PERIOD_END = datetime(2026, 2, 11, 2, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            notifications.payment_confirmed(Decimal("29.9"), PERIOD_END),
            "Recebemos seu pagamento de R$ 29,90. Sua assinatura do Festival de Prêmios está ativa até 10/02/2026.",
        ),
        (
            notifications.lucky_numbers_issued(["01234", "56789"], "Festival de Verão", PERIOD_END),
            "Seus números da sorte para o sorteio Festival de Verão, em 10/02/2026: 01234, 56789. Boa sorte!",
        ),
        (
            notifications.lucky_numbers_issued(["01234"], "Festival de Verão", PERIOD_END),
            "Seu número da sorte para o sorteio Festival de Verão, em 10/02/2026: 01234. Boa sorte!",
        ),
        (
            notifications.renewal_failed(PERIOD_END),
            "Não conseguimos confirmar o pagamento da renovação da sua assinatura. "
            "Regularize até 10/02/2026 para continuar participando dos sorteios.",
        ),
        (
            notifications.cancelled(PERIOD_END),
            "Sua assinatura do Festival de Prêmios foi cancelada. "
            "Você continua com acesso e concorrendo até 10/02/2026.",
        ),
        (notifications.cancelled(None), "Sua assinatura do Festival de Prêmios foi cancelada."),
        (
            notifications.prize_won("Festival de Verão", "01234", "um carro 0 km"),
            "Parabéns! Seu número da sorte 01234 foi sorteado no Festival de Verão. "
            "Você ganhou: um carro 0 km. Nossa equipe entrará em contato para a entrega do prêmio.",
        ),
    ],
    ids=["payment", "numbers", "one_number", "renewal_failed", "cancelled", "cancelled_no_access", "prize"],
)
def test_render_portuguese(body: str, expected: str) -> None:
    assert body == expected


@pytest.mark.parametrize(
    ("amount", "expected"),
    [(Decimal("0.5"), "R$ 0,50"), (Decimal("1234.5"), "R$ 1.234,50"), (Decimal("1000000"), "R$ 1.000.000,00")],
)
def test_format_brl(amount: Decimal, expected: str) -> None:
    assert format_brl(amount) == expected


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, max_size=6)
    yield pool
    await pool.close()


async def add(pool: asyncpg.Pool, count: int, kind: notifications.NotificationKind = "payment_confirmed") -> list[int]:
    ids = []
    async with pool.acquire() as connection, connection.transaction():
        for index in range(count):
            ids.append(await enqueue(connection, f"sub-{index}", kind, f"mensagem {index}"))
    return ids


async def test_enqueue_rolls_back_with_caller(db: asyncpg.Pool) -> None:
    async with db.acquire() as connection:
        with pytest.raises(RuntimeError):
            async with connection.transaction():
                await enqueue(connection, "sub-1", "cancelled", "texto")
                raise RuntimeError("cause failed")

    assert await db.fetchval("SELECT count(*) FROM notifications") == 0


async def test_dispatch_sends_and_marks(db: asyncpg.Pool) -> None:
    ids = await add(db, 3)
    sender = CapturingSender()

    sent = await dispatch_pending(db, sender, batch_size=2)

    assert sent == 3
    assert [notification.id for notification in sender.sent] == ids
    assert sender.sent[0].body == "mensagem 0"
    assert await db.fetchval("SELECT count(*) FROM notifications WHERE sent_at IS NULL") == 0


async def test_dispatch_twice_sends_once(db: asyncpg.Pool) -> None:
    await add(db, 2)
    sender = CapturingSender()

    await dispatch_pending(db, sender)
    again = await dispatch_pending(db, sender)

    assert again == 0
    assert len(sender.sent) == 2


@dataclass
class FlakySender:
    failures: int
    sent: list[Notification] = field(default_factory=list)

    async def send(self, notification: Notification) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("gateway de SMS indisponível")
        self.sent.append(notification)


async def test_failed_send_retried_next_call(db: asyncpg.Pool) -> None:
    [notification_id] = await add(db, 1)
    sender = FlakySender(failures=1)

    first = await dispatch_pending(db, sender)
    second = await dispatch_pending(db, sender)

    assert first == 0
    assert second == 1
    row = await db.fetchrow("SELECT attempts, last_error, sent_at FROM notifications WHERE id = $1", notification_id)
    assert row["attempts"] == 2
    assert row["last_error"].startswith("ConnectionError")
    assert row["sent_at"] is not None


async def test_failed_send_stops_at_max_attempts(db: asyncpg.Pool) -> None:
    await add(db, 1)
    sender = FlakySender(failures=10)

    for _ in range(3):
        await dispatch_pending(db, sender, max_attempts=2)

    assert await db.fetchval("SELECT attempts FROM notifications") == 2


@dataclass
class GatedSender:
    """Captures messages, but waits for `gate` before its first send, holding its batch's locks."""

    gate: asyncio.Event
    started: asyncio.Event = field(default_factory=asyncio.Event)
    sent: list[Notification] = field(default_factory=list)

    async def send(self, notification: Notification) -> None:
        self.started.set()
        await self.gate.wait()
        self.sent.append(notification)


async def test_concurrent_dispatchers_send_once(db: asyncpg.Pool) -> None:
    ids = await add(db, 20)
    gate = asyncio.Event()
    slow = GatedSender(gate)
    fast = CapturingSender()

    slow_run = asyncio.create_task(dispatch_pending(db, slow, batch_size=10), name="slow-dispatcher")
    await asyncio.wait_for(slow.started.wait(), timeout=10)
    fast_count = await asyncio.wait_for(dispatch_pending(db, fast, batch_size=10), timeout=10)
    gate.set()
    slow_count = await asyncio.wait_for(slow_run, timeout=10)

    sent_ids = [notification.id for notification in slow.sent + fast.sent]
    assert slow_count == 10
    assert fast_count == 10
    assert sorted(sent_ids) == ids


async def test_log_sender_writes_ids_only(caplog: pytest.LogCaptureFixture) -> None:
    notification = Notification(7, "sub-7", "prize_won", "Parabéns! Seu número 01234", datetime.now(UTC), 0)

    with caplog.at_level(logging.INFO, logger="festival.notifications"):
        await LogSender().send(notification)

    assert "id=7 subscription_ref=sub-7 kind=prize_won" in caplog.text
    assert "Parabéns" not in caplog.text
