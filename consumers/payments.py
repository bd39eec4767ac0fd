"""Payments consumer: records NIX payments, keeps subscriptions paid and issues lucky numbers."""

import logging
from datetime import datetime

import asyncpg
from dateutil.relativedelta import relativedelta

from broker.envelope import Envelope
from consumers import lucky_numbers
from consumers.delivery import Apply
from festival.outbox import Outbox
from festival.settings import Settings
from schemas.events import PaymentConfirmed, PaymentFailed, PaymentRefunded, SubscriptionChanged

logger = logging.getLogger(__name__)

NAME = "payments"
SOURCE = "/consumers/payments"
PERIODS = {"mensal": relativedelta(months=1), "anual": relativedelta(years=1)}


class PaymentsConsumer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.outbox = Outbox.from_settings(settings)

    async def apply(self, connection: asyncpg.Connection, envelope: Envelope) -> None:
        if envelope.type == PaymentConfirmed.TYPE:
            await self.record_confirmed(connection, envelope, PaymentConfirmed.model_validate(envelope.data))
        elif envelope.type == PaymentFailed.TYPE:
            await self.record_failed(connection, envelope, PaymentFailed.model_validate(envelope.data))
        elif envelope.type == PaymentRefunded.TYPE:
            await self.record_refund(connection, PaymentRefunded.model_validate(envelope.data))
        else:
            raise ValueError(f"payments consumer cannot apply event type {envelope.type!r}")

    async def record_confirmed(self, connection: asyncpg.Connection, envelope: Envelope, event: PaymentConfirmed) -> None:
        subscription = await self._lock_subscription(connection, event.subscription_ref)

        inserted = await connection.fetchval(
            "INSERT INTO payments (charge_id, subscription_ref, event_id, method, amount, status, paid_at)"
            " VALUES ($1, $2, $3, $4, $5, 'confirmed', $6) ON CONFLICT (charge_id) DO NOTHING RETURNING true",
            event.charge_id, event.subscription_ref, envelope.id, event.method, event.amount, event.paid_at,
        )
        if not inserted:
            # NIX's `charge.paid` and the PIX callback may both confirm one charge.
            logger.info("charge already confirmed charge_id=%s event_id=%s", event.charge_id, envelope.id)
            return

        settled_refund = await connection.fetchval(
            "SELECT kind FROM (SELECT CASE status WHEN 'CHARGEBACK' THEN 'charged_back' ELSE 'refunded' END AS kind"
            " FROM refunds WHERE charge_id = $1 AND status IN ('DEVOLVIDO', 'CHARGEBACK') LIMIT 1) AS settled",
            event.charge_id,
        )
        if settled_refund:
            # The refund or chargeback overtook the confirmation: the payment earns nothing.
            await connection.execute("UPDATE payments SET status = $2 WHERE charge_id = $1", event.charge_id, settled_refund)
            logger.warning("confirmation after settled refund charge_id=%s status=%s", event.charge_id, settled_refund)
            return

        period_end = self._extended_period_end(subscription, event.paid_at)
        quantity = lucky_numbers.quantity_for(event.amount, self.settings.lucky_number_price)
        issued = await lucky_numbers.issue(connection, event.charge_id, event.subscription_ref, quantity)

        await self._change_status(
            connection, subscription, envelope, "active", period_end,
            reason=f"payment confirmed charge_id={event.charge_id}", occurred_at=event.paid_at,
            lucky_numbers_issued=len(issued.numbers),
        )
        logger.info(
            "payment confirmed charge_id=%s subscription_ref=%s draw_id=%s lucky_numbers=%d",
            event.charge_id, event.subscription_ref, issued.draw_id, len(issued.numbers),
        )

    async def record_failed(self, connection: asyncpg.Connection, envelope: Envelope, event: PaymentFailed) -> None:
        await connection.execute(
            "INSERT INTO payment_failures (event_id, charge_id, subscription_ref, reason, failed_at)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            envelope.id, event.charge_id, event.subscription_ref, event.reason, event.failed_at,
        )
        logger.info("payment failed charge_id=%s subscription_ref=%s", event.charge_id, event.subscription_ref)

    async def record_refund(self, connection: asyncpg.Connection, event: PaymentRefunded) -> None:
        previous = await connection.fetchval(
            "SELECT status FROM refunds WHERE refund_id = $1 FOR UPDATE", event.refund_id
        )
        await connection.execute(
            "INSERT INTO refunds (refund_id, charge_id, amount, status, updated_at) VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (refund_id) DO UPDATE SET status = EXCLUDED.status, updated_at = EXCLUDED.updated_at"
            " WHERE refunds.updated_at < EXCLUDED.updated_at AND refunds.status NOT IN ('DEVOLVIDO', 'CHARGEBACK')",
            event.refund_id, event.charge_id, event.amount, event.status, event.occurred_at,
        )

        settled = event.status in ("DEVOLVIDO", "CHARGEBACK")
        if not settled or previous in ("DEVOLVIDO", "CHARGEBACK"):
            # In progress or not done: nothing changes; settled before: the effects already happened.
            logger.info("refund recorded refund_id=%s charge_id=%s status=%s", event.refund_id, event.charge_id, event.status)
            return

        new_status = "charged_back" if event.kind == "chargeback" else "refunded"
        await connection.execute(
            "UPDATE payments SET status = $2, refunded_amount = LEAST(amount, refunded_amount + $3) WHERE charge_id = $1",
            event.charge_id, new_status, event.amount,
        )
        voided = await lucky_numbers.void(connection, event.charge_id)
        logger.info(
            "refund settled refund_id=%s charge_id=%s kind=%s lucky_numbers_voided=%d",
            event.refund_id, event.charge_id, event.kind, voided,
        )

    async def _lock_subscription(self, connection: asyncpg.Connection, ref: str) -> asyncpg.Record:
        # A payment may arrive before REDETV!PLUS announces the subscription.
        await connection.execute(
            "INSERT INTO subscriptions (ref, status) VALUES ($1, 'pending_payment') ON CONFLICT DO NOTHING", ref
        )
        row: asyncpg.Record = await connection.fetchrow("SELECT * FROM subscriptions WHERE ref = $1 FOR UPDATE", ref)
        return row

    def _extended_period_end(self, subscription: asyncpg.Record, paid_at: datetime) -> datetime:
        current_end = subscription["current_period_end"]
        start = max(paid_at, current_end) if current_end else paid_at
        result: datetime = start + PERIODS[subscription["plan"]]
        return result

    async def _change_status(
        self,
        connection: asyncpg.Connection,
        subscription: asyncpg.Record,
        envelope: Envelope,
        status: str,
        period_end: datetime,
        *,
        reason: str,
        occurred_at: datetime,
        lucky_numbers_issued: int,
    ) -> None:
        version = subscription["version"] + 1
        await connection.execute(
            "UPDATE subscriptions SET status = $2, current_period_end = $3, version = $4, updated_at = now()"
            " WHERE ref = $1",
            subscription["ref"], status, period_end, version,
        )
        await connection.execute(
            "INSERT INTO subscription_history (subscription_ref, event_id, from_status, to_status, reason, occurred_at)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            subscription["ref"], envelope.id, subscription["status"], status, reason, occurred_at,
        )
        changed = SubscriptionChanged(
            subscription_ref=subscription["ref"],
            user_id=subscription["user_id"],
            status=status,  # type: ignore[arg-type]
            previous_status=subscription["status"],
            current_period_end=period_end,
            version=version,
            reason=reason,
            lucky_numbers_issued=lucky_numbers_issued,
        )
        await self.outbox.publish(connection, changed, source=SOURCE, subject=subscription["ref"])


def build(settings: Settings) -> Apply:
    return PaymentsConsumer(settings).apply
