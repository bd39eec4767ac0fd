"""Public audit data of a draw: everything a third party needs to recompute its winners.

Served at `GET /v1/draws/{id}/audit` and read by `festival draw verify`. It carries numbers only,
never personal data: winners are identified by their lucky number and prize position.
"""

from datetime import date
from typing import Annotated, Final, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

AUDIT_ALGORITHM: Final = "festival-draw-v1"
PACKED_ENCODING: Final = "delta-u32le-zlib-base64"

Hex256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="256 bits as 64 lowercase hex digits")]
DrawMode = Literal["random", "loteria_federal"]


class AuditModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class AuditPrize(AuditModel):
    position: int = Field(ge=1, description="1 is the first prize, drawn first")
    description: str


class PlainEntries(AuditModel):
    """The snapshot's numbers as a JSON list, in any order."""

    encoding: Literal["numbers"] = "numbers"
    numbers: list[Annotated[int, Field(ge=0)]]


class PackedEntries(AuditModel):
    """The snapshot's numbers, compact: see `festival.domain.draw_audit.encode_entries`."""

    encoding: Literal["delta-u32le-zlib-base64"] = PACKED_ENCODING
    data: str = Field(description="base64 of zlib(u32 little-endian gaps between the sorted numbers)")


AuditEntries = Annotated[PlainEntries | PackedEntries, Field(discriminator="encoding")]


class AuditSnapshot(AuditModel):
    sha256: Hex256
    count: int = Field(ge=0)
    frozen_at: AwareDatetime | None = None
    entries: AuditEntries


class LoteriaFederalResult(AuditModel):
    """The five main prizes of the Loteria Federal extraction that decides the draw, 1st prize first."""

    prizes: list[Annotated[str, Field(pattern=r"^[0-9]{5}$")]] = Field(min_length=5, max_length=5)
    contest: str | None = Field(default=None, description="the extraction's contest number (concurso)")
    drawn_on: date | None = None


class AuditWinner(AuditModel):
    position: int = Field(ge=1)
    number: int = Field(ge=0)


class DrawAudit(AuditModel):
    """The published audit record of one draw."""

    algorithm: Literal["festival-draw-v1"] = AUDIT_ALGORITHM
    draw_id: UUID
    title: str
    status: str
    series: int = Field(ge=1, le=1000)
    prizes: list[AuditPrize]
    mode: DrawMode = "random"
    commitment: Hex256
    cutoff_at: AwareDatetime
    snapshot: AuditSnapshot | None = Field(default=None, description="null until the draw is frozen at cut-off")
    loteria_federal: LoteriaFederalResult | None = None
    seed: Hex256 | None = Field(default=None, description="64 hex digits; null until the draw is over")
    winners: list[AuditWinner] = []
    completed_at: AwareDatetime | None = None

    @model_validator(mode="after")
    def _prizes_in_order(self) -> "DrawAudit":
        positions = [prize.position for prize in self.prizes]
        if positions != list(range(1, len(positions) + 1)):
            raise ValueError(f"prize positions must be 1, 2, 3, … in order, got {positions}")
        return self
