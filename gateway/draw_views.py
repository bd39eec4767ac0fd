"""Public views of a draw: the API document, the audit data and the certificate's facts.

The seed and the winners appear only once the draw is completed (the live show has ended), so the
API never reveals a result before the screens do. Winners carry masked values only.
"""

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Annotated, Literal
from uuid import UUID

import asyncpg
from pydantic import AwareDatetime, BaseModel, Field, field_validator, model_validator

from consumers.draw_store import prizes_of, verify_path
from festival.certificate import CertificateData, CertificateWinner
from festival.domain.draw_audit import encode_entries
from festival.domain.draws import snapshot_from_bytes
from festival.domain.lucky_numbers import format_number
from festival.domain.privacy import CPF_MISSING
from schemas.draws import AuditPrize, AuditSnapshot, AuditWinner, DrawAudit, LoteriaFederalResult
from schemas.live import DrawStatus, LivePrize, LiveWinner


# PostgreSQL text cannot store U+0000, so a title or prize that contains it is invalid input.
StoredText = Annotated[str, Field(pattern=r"^[^\x00]*$")]


class DrawCreate(BaseModel):
    title: StoredText = Field(min_length=1, max_length=200)
    prizes: list[StoredText] = Field(min_length=1, max_length=100, description="prize descriptions, 1st prize first")
    scheduled_at: AwareDatetime
    cutoff_at: AwareDatetime
    series: int = Field(default=1, ge=1, le=1000)
    mode: Literal["random", "loteria_federal"] = "random"
    pace_ms: int = Field(default=3000, ge=0, le=600_000, description="pause between two live steps, for television")

    @field_validator("title")
    @classmethod
    def _title_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("blank")
        return value.strip()

    @field_validator("scheduled_at", "cutoff_at")
    @classmethod
    def _in_utc_range(cls, value: datetime) -> datetime:
        # asyncpg sends times in UTC: 9999-12-31T23:00-03:00 or 0001-01-01T00:00+05:00 has no UTC value.
        try:
            value.astimezone(UTC)
        except OverflowError:
            raise ValueError("out of range") from None
        return value


class LoteriaResultsInput(BaseModel):
    prizes: list[str] = Field(description="the 1st to 5th prizes of the extraction, such as \"50366\" or \"50.366\"")
    contest: StoredText | None = Field(default=None, max_length=20)
    drawn_on: date | None = None


class DrawView(BaseModel):
    id: UUID
    title: str
    status: DrawStatus
    mode: Literal["random", "loteria_federal"]
    series: int
    scheduled_at: datetime
    cutoff_at: datetime
    pace_ms: int
    prizes: list[LivePrize]
    commitment: str
    snapshot_sha256: str | None
    entry_count: int | None
    frozen_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    seed: str | None = Field(description="revealed once the draw is completed")
    loteria_federal: LoteriaFederalResult | None
    winners: list[LiveWinner]
    verify_url: str
    certificate_url: str

    @model_validator(mode="after")
    def _nothing_secret_early(self) -> "DrawView":
        assert self.status == "completed" or (self.seed is None and not self.winners)
        return self


def _loteria(draw: asyncpg.Record) -> LoteriaFederalResult | None:
    if draw["loteria_results"] is None:
        return None
    return LoteriaFederalResult(prizes=list(draw["loteria_results"]), contest=draw["loteria_contest"], drawn_on=draw["loteria_drawn_on"])


def _revealed(draw: asyncpg.Record) -> bool:
    return bool(draw["status"] == "completed")


def _revealed_seed(draw: asyncpg.Record) -> str | None:
    seed: str | None = draw["seed"] if _revealed(draw) else None
    return seed


async def winners_by_draw(connection: asyncpg.Connection, draws: Sequence[asyncpg.Record]) -> dict[UUID, list[asyncpg.Record]]:
    """Load the winners of every completed draw in `draws` with one query, keyed by draw id.

    A draw that is not completed maps to an empty list, even when its winners are already stored.
    """
    completed = [draw["id"] for draw in draws if _revealed(draw)]
    winners: dict[UUID, list[asyncpg.Record]] = {draw["id"]: [] for draw in draws}
    if not completed:
        return winners

    rows = await connection.fetch(
        "SELECT draw_id, position, number, display_name, masked_cpf FROM draw_winners"
        " WHERE draw_id = ANY($1::uuid[]) ORDER BY draw_id, position",
        completed,
    )
    for row in rows:
        winners[row["draw_id"]].append(row)
    return winners


async def _winners_of(connection: asyncpg.Connection, draw: asyncpg.Record) -> list[asyncpg.Record]:
    return (await winners_by_draw(connection, [draw]))[draw["id"]]


async def draw_views_of(connection: asyncpg.Connection, draws: Sequence[asyncpg.Record]) -> list[DrawView]:
    """Build the API document of each draw, loading the winners of all of them in one query."""
    winners = await winners_by_draw(connection, draws)
    return [_draw_view(draw, winners[draw["id"]]) for draw in draws]


async def draw_view(connection: asyncpg.Connection, draw: asyncpg.Record) -> DrawView:
    return _draw_view(draw, await _winners_of(connection, draw))


def _draw_view(draw: asyncpg.Record, rows: list[asyncpg.Record]) -> DrawView:
    return DrawView(
        id=draw["id"],
        title=draw["title"],
        status=draw["status"],
        mode=draw["mode"],
        series=draw["series"],
        scheduled_at=draw["scheduled_at"],
        cutoff_at=draw["cutoff_at"],
        pace_ms=draw["pace_ms"],
        prizes=[LivePrize(position=index, description=text) for index, text in enumerate(prizes_of(draw), start=1)],
        commitment=draw["commitment"],
        snapshot_sha256=draw["snapshot_sha256"],
        entry_count=draw["snapshot_count"],
        frozen_at=draw["frozen_at"],
        started_at=draw["started_at"],
        completed_at=draw["completed_at"],
        seed=_revealed_seed(draw),
        loteria_federal=_loteria(draw),
        winners=[
            LiveWinner(
                position=row["position"], number=row["number"], number_display=format_number(row["number"], draw["series"]),
                display_name=row["display_name"], cpf_masked=None if row["masked_cpf"] == CPF_MISSING else row["masked_cpf"],
            )
            for row in rows
        ],
        verify_url=verify_path(draw["id"]),
        certificate_url=f"/v1/draws/{draw['id']}/certificate.pdf",
    )


async def audit_of(connection: asyncpg.Connection, draw: asyncpg.Record) -> DrawAudit:
    snapshot = None
    if draw["snapshot_sha256"] is not None:
        data = await connection.fetchval("SELECT numbers FROM draw_snapshots WHERE draw_id = $1", draw["id"])
        frozen = snapshot_from_bytes(bytes(data))
        snapshot = AuditSnapshot(
            sha256=draw["snapshot_sha256"], count=draw["snapshot_count"], frozen_at=draw["frozen_at"],
            entries=encode_entries(frozen.numbers),
        )
    rows = await _winners_of(connection, draw)

    return DrawAudit(
        draw_id=draw["id"],
        title=draw["title"],
        status=draw["status"],
        series=draw["series"],
        prizes=[AuditPrize(position=index, description=text) for index, text in enumerate(prizes_of(draw), start=1)],
        mode=draw["mode"],
        commitment=draw["commitment"],
        cutoff_at=draw["cutoff_at"],
        snapshot=snapshot,
        loteria_federal=_loteria(draw),
        seed=_revealed_seed(draw),
        winners=[AuditWinner(position=row["position"], number=row["number"]) for row in rows],
        completed_at=draw["completed_at"],
    )


async def certificate_of(connection: asyncpg.Connection, draw: asyncpg.Record) -> CertificateData:
    rows = await _winners_of(connection, draw)
    return CertificateData(
        draw_id=draw["id"],
        title=draw["title"],
        series=draw["series"],
        prizes=prizes_of(draw),
        mode=draw["mode"],
        commitment=draw["commitment"],
        cutoff_at=draw["cutoff_at"],
        issued_at=datetime.now(UTC),
        seed=_revealed_seed(draw),
        snapshot_sha256=draw["snapshot_sha256"],
        snapshot_count=draw["snapshot_count"],
        frozen_at=draw["frozen_at"],
        started_at=draw["started_at"],
        completed_at=draw["completed_at"],
        loteria_prizes=list(draw["loteria_results"]) if draw["loteria_results"] is not None else None,
        loteria_contest=draw["loteria_contest"],
        winners=[
            CertificateWinner(position=row["position"], number=row["number"], display_name=row["display_name"], masked_cpf=row["masked_cpf"])
            for row in rows
        ],
    )
