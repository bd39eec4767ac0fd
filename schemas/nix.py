"""NIX payment webhook body: one event per `POST /webhooks/nix` call.

Fields that NIX adds later are ignored here; the raw body in the inbox keeps them.
"""

from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from schemas.events import PaymentMethod
from schemas.pix import Amount, EndToEndId, RefundStatus, Rfc3339, Txid

Identifier = Annotated[str, Field(min_length=1, max_length=200)]

NixEventType = Literal[
    "charge.created", "charge.paid", "charge.failed", "charge.refunded", "charge.chargeback"
]


class NixCustomer(BaseModel):
    """The payer's personal data; it is stored in `customers` only, never in events or logs."""

    model_config = ConfigDict(extra="ignore", hide_input_in_errors=True)

    name: str | None = None
    email: str | None = None
    cpf: str | None = None
    phone: str | None = None

    def __repr__(self) -> str:
        return "NixCustomer(<personal data>)"

    __str__ = __repr__


class NixPix(BaseModel):
    """PIX details of a charge, with the Banco Central's field names."""

    model_config = ConfigDict(extra="ignore")

    txid: Txid | None = None
    endToEndId: EndToEndId | None = None
    horario: Rfc3339 | None = None


class NixRefund(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: Identifier
    amount: Amount
    status: RefundStatus


class NixChargeData(BaseModel):
    model_config = ConfigDict(extra="ignore")

    charge_id: Identifier
    subscription_ref: Identifier
    amount: Amount
    method: PaymentMethod
    customer: NixCustomer | None = None
    paid_at: Rfc3339 | None = None
    pix: NixPix | None = None
    refund: NixRefund | None = None
    failure_reason: Annotated[str, Field(max_length=1000)] | None = None


class NixEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: Identifier
    type: NixEventType
    created_at: Rfc3339
    data: NixChargeData

    @model_validator(mode="after")
    def _check_fields_of_type(self) -> Self:
        if self.type == "charge.paid" and self.data.paid_at is None:
            raise PydanticCustomError("paid_at_missing", "charge.paid needs data.paid_at")
        if self.type == "charge.refunded" and self.data.refund is None:
            raise PydanticCustomError("refund_missing", "charge.refunded needs data.refund")
        return self

    @property
    def txid(self) -> str | None:
        return self.data.pix.txid if self.data.pix else None
