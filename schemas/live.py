"""Public messages of a live draw, on `draws/{id}/live`, `draws/{id}/state` and `draws/current`.

Screens read these without authentication beyond the read-only broker user, so they carry no
personal data: a winner is shown as first name and initial with the CPF masked (`***.456.789-**`).
Every message is plain JSON (no CloudEvents envelope) so that a browser can render it directly.
"""

from typing import Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

DrawStatus = Literal["scheduled", "closed", "drawing", "completed", "cancelled"]


class LiveModel(BaseModel):
    model_config = ConfigDict(frozen=True)


class LivePrize(LiveModel):
    position: int = Field(ge=1)
    description: str


class LiveWinner(LiveModel):
    position: int = Field(ge=1, description="prize position, 1 first")
    number: int = Field(ge=0)
    number_display: str = Field(description="the lucky number as printed for subscribers")
    display_name: str = Field(description="first name and initial, such as 'Maria S.'")
    cpf_masked: str | None = Field(description="such as ***.456.789-**; null when unknown")


class LiveStep(LiveModel):
    """One step on `draws/{id}/live`; `sequence` grows by one per step of a draw, from 1."""

    draw_id: UUID
    sequence: int = Field(ge=1)
    kind: Literal["started", "number_drawn", "winner", "finished", "cancelled"]
    at: AwareDatetime
    position: int | None = Field(default=None, description="prize position for number_drawn and winner")
    number: int | None = None
    number_display: str | None = None
    winner: LiveWinner | None = None


class DrawState(LiveModel):
    """The whole current state of a draw, retained on `draws/{id}/state`.

    `sequence` is the last step included; a screen ignores a state older than what it has shown.
    """

    draw_id: UUID
    title: str
    status: DrawStatus
    sequence: int = Field(ge=0)
    updated_at: AwareDatetime
    scheduled_at: AwareDatetime
    cutoff_at: AwareDatetime
    prizes: list[LivePrize]
    commitment: str = Field(description="SHA-256 hex of the secret seed, published at creation")
    snapshot_sha256: str | None = None
    entry_count: int | None = None
    numbers_drawn: list[LiveStep] = Field(default_factory=list)
    winners: list[LiveWinner] = Field(default_factory=list)
    seed: str | None = Field(default=None, description="revealed after the draw")
    verify_url: str = Field(description="path of the public audit data, such as /v1/draws/{id}/audit")


class CurrentDraw(LiveModel):
    """Retained on `draws/current`: which draw the landing page follows."""

    draw_id: UUID | None
    status: DrawStatus | None
    scheduled_at: AwareDatetime | None
    updated_at: AwareDatetime
