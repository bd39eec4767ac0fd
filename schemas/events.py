"""Data of the platform's canonical events, carried in the `data` field of the envelope.

Events name facts in the past tense. They carry ids, amounts and times only: personal data stays
in the `customers` table and never travels on the bus.
"""

from decimal import Decimal
from typing import Annotated, ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from broker import topics
from broker.envelope import event_type

Money = Annotated[Decimal, Field(gt=0, max_digits=12, decimal_places=2)]
PaymentMethod = Literal["pix", "card", "boleto"]


class EventData(BaseModel):
    model_config = ConfigDict(frozen=True)

    # Subclasses set these; the outbox writer and the consumers read them.
    TOPIC: ClassVar[str]
    TYPE: ClassVar[str]


class PaymentConfirmed(EventData):
    TOPIC: ClassVar[str] = topics.PAYMENTS_CONFIRMED
    TYPE: ClassVar[str] = event_type("payment.confirmed")

    charge_id: str
    subscription_ref: str
    amount: Money
    method: PaymentMethod
    paid_at: AwareDatetime
    pix_end_to_end_id: str | None = None


class PaymentFailed(EventData):
    TOPIC: ClassVar[str] = topics.PAYMENTS_FAILED
    TYPE: ClassVar[str] = event_type("payment.failed")

    charge_id: str
    subscription_ref: str
    amount: Money
    method: PaymentMethod
    failed_at: AwareDatetime
    reason: str | None = None


class PaymentRefunded(EventData):
    """A refund changed state, or a chargeback arrived (`kind` is `refund` or `chargeback`)."""

    TOPIC: ClassVar[str] = topics.PAYMENTS_REFUNDED
    TYPE: ClassVar[str] = event_type("payment.refunded")

    charge_id: str
    subscription_ref: str
    kind: Literal["refund", "chargeback"]
    refund_id: str
    amount: Money
    status: Literal["EM_PROCESSAMENTO", "DEVOLVIDO", "NAO_REALIZADO", "CHARGEBACK"]
    occurred_at: AwareDatetime


SubscriptionStatus = Literal[
    "pending_payment", "active", "past_due", "suspended", "cancelled", "expired"
]


class SubscriptionChanged(EventData):
    TOPIC: ClassVar[str] = topics.SUBSCRIPTIONS_CHANGED
    TYPE: ClassVar[str] = event_type("subscription.changed")

    subscription_ref: str
    user_id: str | None
    status: SubscriptionStatus
    previous_status: SubscriptionStatus | None
    current_period_end: AwareDatetime | None
    version: int
    reason: str
    lucky_numbers_issued: int = 0


class SubscriptionUpdated(EventData):
    """REDETV!PLUS reported a lifecycle event of a subscription (ids, plan and times only)."""

    TOPIC: ClassVar[str] = topics.SUBSCRIPTIONS_UPDATED
    TYPE: ClassVar[str] = event_type("subscription.updated")

    subscription_ref: str
    user_id: str
    kind: Literal["created", "renewed", "suspended", "reactivated", "cancelled"]
    plan: Literal["mensal", "anual"]
    occurred_at: AwareDatetime
    # The partner's event id orders two events with the same `occurred_at` the same way everywhere.
    partner_event_id: str
    partner_status: str
    current_period_end: AwareDatetime | None = None


class DrawTriggered(EventData):
    TOPIC: ClassVar[str] = topics.DRAWS_TRIGGERED
    TYPE: ClassVar[str] = event_type("draw.triggered")

    draw_id: str
    triggered_by: Literal["scheduler", "operator"]
