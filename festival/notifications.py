"""Messages to subscribers, in Brazilian Portuguese, through the `notifications` outbox table.

`enqueue` writes a message inside the caller's transaction, so it exists only if its cause was
committed. `dispatch_pending` hands unsent messages to a `NotificationSender` and marks them sent.
Bodies name no person: the sender looks up the contact by `subscription_ref` when it delivers.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Literal, Protocol
from zoneinfo import ZoneInfo

import asyncpg

logger = logging.getLogger(__name__)

NotificationKind = Literal["payment_confirmed", "lucky_numbers_issued", "renewal_failed", "cancelled", "prize_won"]

# Dates are shown on the subscribers' clock; Brasília time has had no daylight saving since 2019.
BRAZIL = ZoneInfo("America/Sao_Paulo")


def format_brl(amount: Decimal) -> str:
    """Format an amount as Brazilian reais, such as `R$ 1.234,50`."""
    grouped = f"{amount.quantize(Decimal('0.01')):,.2f}"
    return "R$ " + grouped.replace(",", "_").replace(".", ",").replace("_", ".")


def format_date(moment: datetime) -> str:
    return moment.astimezone(BRAZIL).strftime("%d/%m/%Y")


def payment_confirmed(amount: Decimal, period_end: datetime) -> str:
    return (
        f"Recebemos seu pagamento de {format_brl(amount)}. "
        f"Sua assinatura do Festival de Prêmios está ativa até {format_date(period_end)}."
    )


def lucky_numbers_issued(numbers: Sequence[str], draw_title: str, draw_at: datetime) -> str:
    listed = ", ".join(numbers)
    noun = "Seu número da sorte" if len(numbers) == 1 else "Seus números da sorte"
    return f"{noun} para o sorteio {draw_title}, em {format_date(draw_at)}: {listed}. Boa sorte!"


def renewal_failed(grace_until: datetime) -> str:
    return (
        "Não conseguimos confirmar o pagamento da renovação da sua assinatura. "
        f"Regularize até {format_date(grace_until)} para continuar participando dos sorteios."
    )


def cancelled(access_until: datetime | None) -> str:
    if access_until is None:
        return "Sua assinatura do Festival de Prêmios foi cancelada."
    return (
        "Sua assinatura do Festival de Prêmios foi cancelada. "
        f"Você continua com acesso e concorrendo até {format_date(access_until)}."
    )


def prize_won(draw_title: str, number: str, prize: str) -> str:
    return (
        f"Parabéns! Seu número da sorte {number} foi sorteado no {draw_title}. "
        f"Você ganhou: {prize}. Nossa equipe entrará em contato para a entrega do prêmio."
    )


@dataclass(frozen=True)
class Notification:
    id: int
    subscription_ref: str
    kind: NotificationKind
    body: str
    created_at: datetime
    attempts: int


class NotificationSender(Protocol):
    async def send(self, notification: Notification) -> None:
        """Deliver one message; raise to have it tried again by a later dispatch."""


class LogSender:
    """Writes each message to the log, with ids and kind only (the body may still be read from the table)."""

    async def send(self, notification: Notification) -> None:
        logger.info(
            "notification sent id=%s subscription_ref=%s kind=%s",
            notification.id, notification.subscription_ref, notification.kind,
        )


@dataclass
class CapturingSender:
    """Keeps every message it is given, for tests."""

    sent: list[Notification] = field(default_factory=list)

    async def send(self, notification: Notification) -> None:
        self.sent.append(notification)


async def enqueue(connection: asyncpg.Connection, subscription_ref: str, kind: NotificationKind, body: str) -> int:
    """Store a message for the dispatcher; call inside the transaction that records its cause."""
    notification_id: int = await connection.fetchval(
        "INSERT INTO notifications (subscription_ref, kind, body) VALUES ($1, $2, $3) RETURNING id",
        subscription_ref, kind, body,
    )
    return notification_id


async def dispatch_pending(
    pool: asyncpg.Pool, sender: NotificationSender, *, batch_size: int = 100, max_attempts: int = 5
) -> int:
    """Send unsent messages in batches until none is left; return how many were sent.

    Each batch is locked with FOR UPDATE SKIP LOCKED, so concurrent dispatchers take disjoint rows.
    A message that fails stays unsent and is tried again by a later call, up to `max_attempts`.
    NOTE: a crash between a send and its commit sends that message again (at least once).
    """
    sent_total = 0
    # Each call passes over a message once, so a failing one waits for the next call.
    after_id = 0
    while True:
        async with pool.acquire() as connection, connection.transaction():
            rows = await connection.fetch(
                "SELECT id, subscription_ref, kind, body, created_at, attempts FROM notifications"
                " WHERE sent_at IS NULL AND attempts < $1 AND id > $3"
                " ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED",
                max_attempts, batch_size, after_id,
            )
            if not rows:
                return sent_total

            after_id = rows[-1]["id"]
            sent_ids = []
            for row in rows:
                notification = Notification(**dict(row))
                if await _send_one(connection, sender, notification, max_attempts):
                    sent_ids.append(notification.id)

            # One statement marks the batch. The transaction commits after every send either way.
            if sent_ids:
                await connection.execute(
                    "UPDATE notifications SET sent_at = now(), attempts = attempts + 1 WHERE id = ANY($1::bigint[])",
                    sent_ids,
                )
            sent_total += len(sent_ids)
        if len(rows) < batch_size:
            # A short batch took every unsent row not locked by another dispatcher.
            return sent_total


async def _send_one(
    connection: asyncpg.Connection, sender: NotificationSender, notification: Notification, max_attempts: int
) -> bool:
    """Send one message, and count the attempt when it fails. Return whether it was sent (the caller marks it)."""
    try:
        await sender.send(notification)
    except Exception as error:
        attempts = notification.attempts + 1
        level = logging.ERROR if attempts >= max_attempts else logging.WARNING
        logger.log(
            level,
            "notification send failed id=%s subscription_ref=%s kind=%s attempts=%s",
            notification.id, notification.subscription_ref, notification.kind, attempts,
            exc_info=True,
        )
        await connection.execute(
            "UPDATE notifications SET attempts = $2, last_error = $3 WHERE id = $1",
            notification.id, attempts, f"{type(error).__name__}: {error}"[:500],
        )
        return False
    return True
