"""Operator view of one subscription: status, payments, lucky numbers and history.

It returns ids, amounts and times only; the customer's personal data is never read here.
"""

from datetime import datetime
from decimal import Decimal
from typing import Annotated
from uuid import UUID

import asyncpg
from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, PlainSerializer

from gateway.auth import require_operator
from gateway.problems import PROBLEM_RESPONSES, ProblemError

router = APIRouter(prefix="/v1", tags=["operator"], dependencies=[Depends(require_operator)])

MoneyText = Annotated[Decimal, PlainSerializer(lambda amount: f"{amount:.2f}", return_type=str)]


class PaymentView(BaseModel):
    charge_id: str
    method: str
    amount: MoneyText
    status: str
    paid_at: datetime
    refunded_amount: MoneyText


class LuckyNumberView(BaseModel):
    draw_id: UUID
    number: int
    voided: bool


class HistoryEntry(BaseModel):
    event_id: UUID
    from_status: str | None
    to_status: str
    reason: str
    occurred_at: datetime
    recorded_at: datetime


class SubscriptionView(BaseModel):
    subscription_ref: str
    status: str
    plan: str
    user_id: str | None
    current_period_end: datetime | None
    version: int
    payments: list[PaymentView]
    lucky_numbers: list[LuckyNumberView]
    history: list[HistoryEntry]


SELECT_SUBSCRIPTION = """
SELECT ref, status, plan, user_id, current_period_end, version FROM subscriptions WHERE ref = $1
"""
SELECT_PAYMENTS = """
SELECT charge_id, method, amount, status, paid_at, refunded_amount
FROM payments WHERE subscription_ref = $1 ORDER BY paid_at, charge_id
"""
SELECT_LUCKY_NUMBERS = """
SELECT draw_id, number, voided_at IS NOT NULL AS voided
FROM lucky_numbers WHERE subscription_ref = $1 ORDER BY issued_at, draw_id, number
"""
SELECT_HISTORY = """
SELECT event_id, from_status, to_status, reason, occurred_at, recorded_at
FROM subscription_history WHERE subscription_ref = $1 ORDER BY id
"""


@router.get("/subscriptions/{subscription_ref}", response_model=SubscriptionView, responses=PROBLEM_RESPONSES)
async def get_subscription(
    # PostgreSQL text cannot contain U+0000, so asyncpg would fail to send such a ref.
    subscription_ref: Annotated[str, Path(pattern=r"^[^\x00]+$")],
    request: Request,
) -> SubscriptionView:
    """Return a subscription with its payments, lucky numbers and status history."""
    pool: asyncpg.Pool = request.app.state.pool
    async with pool.acquire() as connection, connection.transaction(readonly=True, isolation="repeatable_read"):
        subscription = await connection.fetchrow(SELECT_SUBSCRIPTION, subscription_ref)
        if subscription is None:
            raise ProblemError(
                404,
                "subscription_not_found",
                "Subscription not found",
                "Nenhuma assinatura com este identificador foi recebida da REDETV!PLUS.",
            )
        payments = await connection.fetch(SELECT_PAYMENTS, subscription_ref)
        lucky_numbers = await connection.fetch(SELECT_LUCKY_NUMBERS, subscription_ref)
        history = await connection.fetch(SELECT_HISTORY, subscription_ref)

    return SubscriptionView(
        subscription_ref=subscription["ref"],
        status=subscription["status"],
        plan=subscription["plan"],
        user_id=subscription["user_id"],
        current_period_end=subscription["current_period_end"],
        version=subscription["version"],
        payments=[PaymentView(**dict(row)) for row in payments],
        lucky_numbers=[LuckyNumberView(**dict(row)) for row in lucky_numbers],
        history=[HistoryEntry(**dict(row)) for row in history],
    )
