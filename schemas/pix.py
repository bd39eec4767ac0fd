"""The Banco Central's API Pix callback body (`bacen/pix-api` 2.9.0), as NIX forwards it.

Also home of the two wire formats both partners share: money as a decimal string with exactly two
decimals (the API Pix `valor` format) and RFC 3339 times with an offset.
"""

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

# `[0-9]` rather than `\d`, which would also match non-ASCII digits.
_AMOUNT = re.compile(r"[0-9]{1,10}\.[0-9]{2}")
# The offset is optional here so that a naive time fails with pydantic's `timezone_aware` error.
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})?"
)


def _parse_amount(value: object) -> Decimal:
    if not isinstance(value, str) or not _AMOUNT.fullmatch(value):
        raise PydanticCustomError(
            "invalid_amount", "amount must be a decimal string with two decimals, such as 29.90"
        )

    amount = Decimal(value)
    if amount <= 0:
        raise PydanticCustomError("amount_not_positive", "amount must be greater than zero")
    return amount


def _check_rfc3339(value: object) -> object:
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise PydanticCustomError(
            "invalid_datetime", "time must be RFC 3339 with an offset, such as 2025-03-01T12:00:00-03:00"
        )
    return value


Amount = Annotated[
    Decimal,
    BeforeValidator(_parse_amount),
    WithJsonSchema({"type": "string", "pattern": r"^[0-9]{1,10}\.[0-9]{2}$", "examples": ["29.90"]}),
]
"""Positive BRL amount written as a string with exactly two decimals (`"29.90"`)."""

def _check_utc_range(value: datetime) -> datetime:
    # PostgreSQL stores times in UTC: 9999-12-31T23:00-03:00 or 0001-01-01T00:00+05:00 has no UTC value.
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise PydanticCustomError("datetime_out_of_range", "time is outside the range PostgreSQL can store") from None
    return value


StorableTime = Annotated[AwareDatetime, AfterValidator(_check_utc_range)]
"""Timezone-aware time that has a UTC value, so PostgreSQL can store it."""

Rfc3339 = Annotated[
    AwareDatetime,
    BeforeValidator(_check_rfc3339),
    AfterValidator(_check_utc_range),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
"""Timezone-aware time written in RFC 3339 with an offset."""

EndToEndId = Annotated[str, Field(pattern=r"^[a-zA-Z0-9]{32}$")]
Txid = Annotated[str, Field(pattern=r"^[a-zA-Z0-9]{1,35}$")]

RefundStatus = Literal["EM_PROCESSAMENTO", "DEVOLVIDO", "NAO_REALIZADO"]


class PixRefundTimes(BaseModel):
    model_config = ConfigDict(extra="ignore")

    solicitacao: Rfc3339 | None = None
    liquidacao: Rfc3339 | None = None


class PixRefund(BaseModel):
    """One `devolucoes` item: a refund of part or all of a received PIX."""

    model_config = ConfigDict(extra="ignore")

    id: Annotated[str, Field(min_length=1, max_length=35)]
    rtrId: Annotated[str, Field(min_length=1, max_length=32)]
    valor: Amount
    horario: PixRefundTimes | None = None
    status: RefundStatus
    natureza: str | None = None
    motivo: str | None = None


class Pix(BaseModel):
    """One received PIX. `infoPagador` is the payer's free text and may hold personal data."""

    model_config = ConfigDict(extra="ignore")

    endToEndId: EndToEndId
    txid: Txid | None = None
    valor: Amount
    chave: str | None = None
    horario: Rfc3339
    infoPagador: Annotated[str, Field(max_length=140)] | None = None
    devolucoes: list[PixRefund] = []


class PixCallback(BaseModel):
    """Body of a `POST /webhooks/nix/pix` call: one or more received PIX."""

    model_config = ConfigDict(extra="ignore")

    pix: Annotated[list[Pix], Field(min_length=1, max_length=1000)]
