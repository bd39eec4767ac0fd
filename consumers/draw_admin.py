"""Operator actions on draws, shared by the admin API and the scheduler jobs.

Each function runs inside the caller's transaction and writes the public state to the outbox.
A refused action raises `DrawConflict` with a Portuguese reason, which the API returns as a 409.
"""

import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal
from uuid import UUID

import asyncpg

from consumers.draw_store import fetch_draw, publish_state
from consumers.lucky_numbers import issue_waiting_grants
from festival.domain.draws import commitment, new_seed
from festival.outbox import Outbox
from festival.settings import Settings
from schemas.events import DrawTriggered

logger = logging.getLogger(__name__)

SOURCE = "/draws"


class DrawNotFound(LookupError):
    pass


class DrawConflict(Exception):
    """The draw's status does not allow the action; `detail` is Portuguese, for the operator."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(code)
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class NewDraw:
    title: str
    prizes: list[str]
    scheduled_at: datetime
    cutoff_at: datetime
    series: int = 1
    mode: Literal["random", "loteria_federal"] = "random"
    pace_ms: int = 3000


async def create_draw(connection: asyncpg.Connection, settings: Settings, new: NewDraw) -> UUID:
    """Insert a draw with a fresh secret seed, publish its commitment, and issue the waiting grants."""
    draw_id = uuid.uuid4()
    seed = new_seed()
    await connection.execute(
        "INSERT INTO draws (id, title, scheduled_at, cutoff_at, series, number_key, prizes, mode, seed, commitment, pace_ms)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        draw_id, new.title, new.scheduled_at, new.cutoff_at, new.series, secrets.token_bytes(32),
        new.prizes, new.mode, seed, commitment(seed), new.pace_ms,
    )
    issued = await issue_waiting_grants(connection, draw_id)
    await publish_state(connection, settings, draw_id)
    logger.info("draw created draw_id=%s mode=%s prizes=%d waiting_numbers_issued=%d", draw_id, new.mode, len(new.prizes), issued)
    return draw_id


async def _locked(connection: asyncpg.Connection, draw_id: UUID) -> asyncpg.Record:
    draw = await fetch_draw(connection, draw_id, lock=True)
    if draw is None:
        raise DrawNotFound(draw_id)
    return draw


async def trigger(connection: asyncpg.Connection, settings: Settings, draw_id: UUID, by: Literal["scheduler", "operator"]) -> bool:
    """Publish DrawTriggered once per draw; return False when it was triggered already."""
    draw = await _locked(connection, draw_id)
    if draw["status"] in ("completed", "cancelled"):
        raise DrawConflict(f"draw_{draw['status']}", f"O sorteio já está {_STATUS_PT[draw['status']]} e não pode ser realizado.")
    if draw["mode"] == "loteria_federal" and draw["loteria_results"] is None:
        raise DrawConflict("loteria_results_missing", "Informe os cinco prêmios da Loteria Federal antes de realizar o sorteio.")
    if draw["triggered_at"] is not None or draw["status"] == "drawing":
        logger.info("draw trigger repeated draw_id=%s by=%s", draw_id, by)
        return False

    await connection.execute("UPDATE draws SET triggered_at = now() WHERE id = $1", draw_id)
    await Outbox.from_settings(settings).publish(
        connection, DrawTriggered(draw_id=str(draw_id), triggered_by=by), source=SOURCE, subject=str(draw_id)
    )
    logger.info("draw trigger published draw_id=%s by=%s", draw_id, by)
    return True


_STATUS_PT = {"completed": "concluído", "cancelled": "cancelado", "drawing": "em andamento"}


async def cancel(connection: asyncpg.Connection, settings: Settings, draw_id: UUID) -> None:
    """Cancel a draw that has not started; cancelling a cancelled draw changes nothing."""
    draw = await _locked(connection, draw_id)
    if draw["status"] == "cancelled":
        return
    if draw["status"] in ("drawing", "completed") or draw["triggered_at"] is not None:
        status = "drawing" if draw["status"] != "completed" else "completed"
        raise DrawConflict(f"draw_{status}", f"O sorteio já está {_STATUS_PT[status]} e não pode ser cancelado.")

    await connection.execute("UPDATE draws SET status = 'cancelled' WHERE id = $1", draw_id)
    await publish_state(connection, settings, draw_id)
    logger.info("draw cancelled draw_id=%s", draw_id)


async def set_loteria_results(
    connection: asyncpg.Connection, draw_id: UUID, prizes: list[str], contest: str | None, drawn_on: date | None
) -> None:
    """Store the five Loteria Federal prizes (already normalised) of a draw that has not run."""
    draw = await _locked(connection, draw_id)
    if draw["mode"] != "loteria_federal":
        raise DrawConflict("not_loteria_federal", "Este sorteio não usa a Loteria Federal; ele é decidido pela semente.")
    if draw["status"] in ("drawing", "completed", "cancelled"):
        raise DrawConflict(f"draw_{draw['status']}", f"O sorteio já está {_STATUS_PT[draw['status']]}; o resultado não pode mudar.")

    await connection.execute(
        "UPDATE draws SET loteria_results = $2, loteria_contest = $3, loteria_drawn_on = $4 WHERE id = $1",
        draw_id, prizes, contest, drawn_on,
    )
    logger.info("loteria federal results stored draw_id=%s contest=%s", draw_id, contest)
