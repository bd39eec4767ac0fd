"""Payments consumer: records NIX payments and applies them to the subscription state machine.

A payment is recorded once per charge. Its effect on the subscription (status, paid period, lucky
numbers, notifications) goes through `SubscriptionStore`, which keeps it while the subscription is
unknown and applies it, lucky numbers included, when REDETV!PLUS announces the subscription.
"""

import logging

import asyncpg

from broker.envelope import Envelope
from consumers import lucky_numbers
from consumers.delivery import Apply
from consumers.subscription_store import SubscriptionStore, event_lock_key, lock, state_from_evidence
from festival.domain.subscriptions import ChargeChargedBack, ChargeFailed, ChargePaid, ChargeRefunded, PaymentFact
from festival.settings import Settings
from schemas.events import PaymentConfirmed, PaymentFailed, PaymentRefunded

logger = logging.getLogger(__name__)

NAME = "payments"
SOURCE = "/consumers/payments"

RECORD_CONFIRMED = "SELECT status, evidence FROM record_confirmed_payment($1, $2, $3, $4, $5, $6)"


class PaymentsConsumer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = SubscriptionStore.from_settings(settings, source=SOURCE)

    async def apply(self, connection: asyncpg.Connection, envelope: Envelope) -> None:
        if envelope.type == PaymentConfirmed.TYPE:
            await self.record_confirmed(connection, envelope, PaymentConfirmed.model_validate(envelope.data))
        elif envelope.type == PaymentFailed.TYPE:
            await self.record_failed(connection, envelope, PaymentFailed.model_validate(envelope.data))
        elif envelope.type == PaymentRefunded.TYPE:
            await self.record_refund(connection, envelope, PaymentRefunded.model_validate(envelope.data))
        else:
            raise ValueError(f"payments consumer cannot apply event type {envelope.type!r}")

    async def record_confirmed(self, connection: asyncpg.Connection, envelope: Envelope, event: PaymentConfirmed) -> None:
        # One round trip (migration 0010): take the subscription's lock first, so that the payment
        # row and the state change follow one order per subscription, then record the payment and
        # load the state.
        row = await connection.fetchrow(
            RECORD_CONFIRMED,
            event.charge_id, event.subscription_ref, envelope.id, event.method, event.amount, event.paid_at,
        )
        if row["status"] is None:
            # NIX's `charge.paid` and the PIX callback may both confirm one charge.
            logger.info("charge already confirmed charge_id=%s event_id=%s", event.charge_id, envelope.id)
            return

        if row["status"] != "confirmed":
            # The refund or chargeback overtook the confirmation: the payment earns no lucky numbers.
            logger.warning("confirmation after settled refund charge_id=%s status=%s", event.charge_id, row["status"])

        fact = ChargePaid(
            subscription_ref=event.subscription_ref,
            event_id=str(envelope.id),
            occurred_at=event.paid_at,
            charge_id=event.charge_id,
            amount=event.amount,
        )
        state = state_from_evidence(row["evidence"])
        decision = await self.store.apply_loaded(connection, state, fact, event_id=envelope.id)
        logger.info(
            "payment confirmed charge_id=%s subscription_ref=%s held=%s",
            event.charge_id, event.subscription_ref, decision.hold,
        )

    async def record_failed(self, connection: asyncpg.Connection, envelope: Envelope, event: PaymentFailed) -> None:
        await lock(connection, event.subscription_ref)
        inserted = await connection.fetchval(
            "INSERT INTO payment_failures (event_id, charge_id, subscription_ref, reason, failed_at)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING true",
            envelope.id, event.charge_id, event.subscription_ref, event.reason, event.failed_at,
        )
        logger.info("payment failed charge_id=%s subscription_ref=%s", event.charge_id, event.subscription_ref)
        if inserted:
            fact = ChargeFailed(
                subscription_ref=event.subscription_ref,
                event_id=str(envelope.id),
                occurred_at=event.failed_at,
                charge_id=event.charge_id,
                reason=event.reason,
            )
            await self.store.apply_fact(connection, fact, event_id=envelope.id)

    async def record_refund(self, connection: asyncpg.Connection, envelope: Envelope, event: PaymentRefunded) -> None:
        await lock(connection, event.subscription_ref)
        previous = await connection.fetchval(
            "SELECT status FROM refunds WHERE refund_id = $1 FOR UPDATE", event.refund_id
        )
        # A settled status is final, so it replaces an in-progress one whatever the timestamps: the
        # effects below run only once the row is settled, and a later copy must find it settled.
        await connection.execute(
            "INSERT INTO refunds (refund_id, charge_id, amount, status, updated_at) VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (refund_id) DO UPDATE SET status = EXCLUDED.status, updated_at = EXCLUDED.updated_at"
            " WHERE refunds.status NOT IN ('DEVOLVIDO', 'CHARGEBACK')"
            " AND (refunds.updated_at < EXCLUDED.updated_at OR EXCLUDED.status IN ('DEVOLVIDO', 'CHARGEBACK'))",
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
        await self.store.apply_fact(connection, _reversal_fact(envelope, event), event_id=envelope.id)


def _reversal_fact(envelope: Envelope, event: PaymentRefunded) -> PaymentFact:
    if event.kind == "chargeback" or event.status == "CHARGEBACK":
        return ChargeChargedBack(
            subscription_ref=event.subscription_ref,
            event_id=str(envelope.id),
            occurred_at=event.occurred_at,
            charge_id=event.charge_id,
            refund_id=event.refund_id,
            amount=event.amount,
        )

    assert event.status == "DEVOLVIDO"  # only settled refunds reach this point
    return ChargeRefunded(
        subscription_ref=event.subscription_ref,
        event_id=str(envelope.id),
        occurred_at=event.occurred_at,
        charge_id=event.charge_id,
        refund_id=event.refund_id,
        amount=event.amount,
        status=event.status,
    )


# Events of one subscription take its lock, so a batch of deliveries takes them all first.
lock_key = event_lock_key
# Every write path here requests its wakeups through `festival.wakeups`.
NOTIFY_AFTER_COMMIT = True


def build(settings: Settings) -> Apply:
    return PaymentsConsumer(settings).apply
