"""CloudEvents 1.0 envelope in structured JSON mode, carrying W3C trace context as extensions.

Trace context travels inside the envelope so that it survives MQTT 3.1.1, which has no user
properties; on MQTT 5 the publisher copies it into user properties as well.
"""

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator
from uuid6 import uuid7


class Envelope(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")

    specversion: str = "1.0"
    id: UUID = Field(default_factory=uuid7)
    source: str
    type: str
    subject: str
    time: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    datacontenttype: str = "application/json"
    data: dict[str, Any]
    traceparent: str | None = None
    tracestate: str | None = None

    @field_validator("traceparent", "tracestate", mode="before")
    @classmethod
    def _drop_non_text_context(cls, value: object) -> object:
        # Trace context is optional metadata: a value of the wrong JSON type starts a new
        # trace instead of making the whole event invalid.
        return value if value is None or isinstance(value, str) else None

    def to_json(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()

    @classmethod
    def from_json(cls, payload: bytes | str) -> "Envelope":
        return cls.model_validate_json(payload)


def event_type(name: str, version: int = 1) -> str:
    """Return the CloudEvents type of a platform event, such as `festival.payment.confirmed.v1`."""
    return f"festival.{name}.v{version}"
