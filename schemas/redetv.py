"""The REDETV!PLUS webhook payload and its translation into a subscription fact.

The partner may add fields at any time, so unknown fields are accepted (the raw body stays in the
inbox). The `user` object contains personal data: its known fields are `SecretStr`, unknown ones are
dropped because they may be personal too, its `repr` shows the id only, and validation errors
never echo the input.
"""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, SecretStr, model_validator

from festival.domain.subscriptions import (
    LifecycleFact,
    SubscriptionCancelled,
    SubscriptionCreated,
    SubscriptionReactivated,
    SubscriptionRenewed,
    SubscriptionSuspended,
)
from schemas.pix import StorableTime

RedetvEventType = Literal[
    "subscription.created",
    "subscription.renewed",
    "subscription.suspended",
    "subscription.reactivated",
    "subscription.cancelled",
    "user.updated",
]

FACT_BY_EVENT: dict[str, type[LifecycleFact]] = {
    "subscription.created": SubscriptionCreated,
    "subscription.renewed": SubscriptionRenewed,
    "subscription.suspended": SubscriptionSuspended,
    "subscription.reactivated": SubscriptionReactivated,
    "subscription.cancelled": SubscriptionCancelled,
}


class RedetvSubscription(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    id: str
    user_id: str
    plan: Literal["mensal", "anual"]
    # The partner's own status word; kept as sent because the platform derives its own status.
    status: str
    current_period_end: StorableTime | None = None


class RedetvUser(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, hide_input_in_errors=True)

    id: str
    name: SecretStr | None = None
    email: SecretStr | None = None
    cpf: SecretStr | None = None
    phone: SecretStr | None = None

    def __repr_args__(self) -> Any:
        yield "id", self.id

    def personal_data(self) -> dict[str, str | None]:
        """Return the plain values for the `customers` table, the only place they are stored."""
        fields = {"name": self.name, "email": self.email, "cpf": self.cpf, "phone": self.phone}
        return {key: value.get_secret_value() if value else None for key, value in fields.items()}


class RedetvWebhook(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, hide_input_in_errors=True)

    event_id: str
    event: RedetvEventType
    occurred_at: StorableTime
    subscription: RedetvSubscription | None = None
    user: RedetvUser | None = None

    @model_validator(mode="after")
    def _subscription_required(self) -> "RedetvWebhook":
        if self.event != "user.updated" and self.subscription is None:
            raise ValueError(f"event {self.event} requires a `subscription` object")
        return self

    def __repr_args__(self) -> Any:
        for key in ("event_id", "event", "occurred_at", "subscription", "user"):
            yield key, getattr(self, key)


def to_fact(webhook: RedetvWebhook) -> LifecycleFact | None:
    """Translate a webhook into the state machine's input fact.

    Return None for `user.updated`, which only changes personal data.
    """
    fact_type = FACT_BY_EVENT.get(webhook.event)
    if fact_type is None or webhook.subscription is None:
        return None

    subscription = webhook.subscription
    return fact_type(
        subscription_ref=subscription.id,
        event_id=webhook.event_id,
        occurred_at=webhook.occurred_at,
        user_id=subscription.user_id,
        plan=subscription.plan,
        current_period_end=subscription.current_period_end,
    )
