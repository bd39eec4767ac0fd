"""Draws API: operators create, list, cancel and trigger draws; anyone reads a draw, its audit and certificate.

Public routes return masked winners only, and the seed and winners only after the live show ends.
"""

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from uuid import UUID

import asyncpg
from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel

from consumers import draw_admin
from consumers.draw_store import DRAW_COLUMNS, fetch_draw
from festival.certificate import render_certificate
from festival.domain.draw_loteria import LoteriaResultError, normalise_results
from gateway.auth import require_operator
from gateway.draw_views import (
    DrawCreate, DrawView, LoteriaResultsInput, audit_of, certificate_of, draw_view, draw_views_of,
)
from gateway.problems import PROBLEM_RESPONSES, ProblemError
from schemas.draws import DrawAudit
from schemas.problems import FieldError

logger = logging.getLogger(__name__)

operator_router = APIRouter(prefix="/v1/draws", tags=["draws"], dependencies=[Depends(require_operator)])
public_router = APIRouter(prefix="/v1/draws", tags=["draws"])


class TriggerResult(BaseModel):
    draw_id: UUID
    triggered: bool
    detail: str


def _pool(request: Request) -> asyncpg.Pool:
    pool: asyncpg.Pool = request.app.state.pool
    return pool


def _not_found(draw_id: UUID) -> ProblemError:
    return ProblemError(404, "draw_not_found", "Draw not found", f"Não existe sorteio com o identificador {draw_id}.")


@contextmanager
def _draw_problems(draw_id: UUID) -> Iterator[None]:
    """Convert `DrawNotFound` from an operator action into a 404 problem and `DrawConflict` into a 409 problem."""
    try:
        yield
    except draw_admin.DrawNotFound:
        raise _not_found(draw_id) from None
    except draw_admin.DrawConflict as error:
        raise ProblemError(409, error.code, "Draw status conflict", error.detail) from None


async def _existing_draw(connection: asyncpg.Connection, draw_id: UUID) -> asyncpg.Record:
    draw = await fetch_draw(connection, draw_id)
    if draw is None:
        raise _not_found(draw_id)
    return draw


async def _view_of(connection: asyncpg.Connection, draw_id: UUID) -> DrawView:
    return await draw_view(connection, await _existing_draw(connection, draw_id))


def _invalid(pointer: str, code: str, detail: str) -> ProblemError:
    return ProblemError(
        422, "validation_failed", "Validation failed", detail, errors=[FieldError(pointer=pointer, code=code, detail=detail)]
    )


def _check_new(body: DrawCreate) -> list[str]:
    if body.cutoff_at > body.scheduled_at:
        raise _invalid("#/cutoff_at", "cutoff_after_draw", "O encerramento das participações deve ser antes ou no horário do sorteio.")
    if body.scheduled_at <= datetime.now(UTC):
        raise _invalid("#/scheduled_at", "scheduled_in_past", "O horário do sorteio já passou; escolha um horário futuro.")
    prizes = [prize.strip() for prize in body.prizes]
    for index, prize in enumerate(prizes):
        if not prize:
            raise _invalid(f"#/prizes/{index}", "prize_blank", "Cada prêmio precisa de uma descrição.")
    return prizes


@operator_router.post("", status_code=201, response_model=DrawView, responses=PROBLEM_RESPONSES)
async def create(body: DrawCreate, request: Request, response: Response) -> DrawView:
    """Create a draw: the platform generates its secret seed and publishes the commitment."""
    prizes = _check_new(body)
    new = draw_admin.NewDraw(
        title=body.title, prizes=prizes, scheduled_at=body.scheduled_at, cutoff_at=body.cutoff_at,
        series=body.series, mode=body.mode, pace_ms=body.pace_ms,
    )
    async with _pool(request).acquire() as connection, connection.transaction():
        draw_id = await draw_admin.create_draw(connection, request.app.state.settings, new)
        view = await _view_of(connection, draw_id)
    response.headers["Location"] = f"/v1/draws/{draw_id}"
    return view


@operator_router.get("", response_model=list[DrawView], responses=PROBLEM_RESPONSES)
async def list_draws(request: Request) -> list[DrawView]:
    """List up to 500 draws, the latest scheduled time first."""
    async with _pool(request).acquire() as connection:
        rows = await connection.fetch(f"SELECT {DRAW_COLUMNS} FROM draws ORDER BY scheduled_at DESC, id LIMIT 500")
        return await draw_views_of(connection, rows)


@operator_router.post("/{draw_id}/cancel", response_model=DrawView, responses=PROBLEM_RESPONSES)
async def cancel(draw_id: UUID, request: Request) -> DrawView:
    """Cancel a draw that has not started."""
    async with _pool(request).acquire() as connection, connection.transaction():
        with _draw_problems(draw_id):
            await draw_admin.cancel(connection, request.app.state.settings, draw_id)
        return await _view_of(connection, draw_id)


@operator_router.post("/{draw_id}/trigger", status_code=202, response_model=TriggerResult, responses=PROBLEM_RESPONSES)
async def trigger(draw_id: UUID, request: Request) -> TriggerResult:
    """Run the draw now; a second trigger is accepted and changes nothing."""
    async with _pool(request).acquire() as connection, connection.transaction():
        with _draw_problems(draw_id):
            triggered = await draw_admin.trigger(connection, request.app.state.settings, draw_id, "operator")
    detail = "Sorteio disparado." if triggered else "O sorteio já tinha sido disparado; ele acontece uma única vez."
    return TriggerResult(draw_id=draw_id, triggered=triggered, detail=detail)


@operator_router.put("/{draw_id}/loteria-federal", response_model=DrawView, responses=PROBLEM_RESPONSES)
async def loteria_results(draw_id: UUID, body: LoteriaResultsInput, request: Request) -> DrawView:
    """Enter the 1st to 5th prizes of the Loteria Federal extraction that decides the draw."""
    try:
        prizes = normalise_results(body.prizes)
    except LoteriaResultError:
        raise _invalid(
            "#/prizes", "loteria_results_invalid", "Informe exatamente os cinco primeiros prêmios da Loteria Federal, cada um com 5 dígitos."
        ) from None

    async with _pool(request).acquire() as connection, connection.transaction():
        with _draw_problems(draw_id):
            await draw_admin.set_loteria_results(connection, draw_id, prizes, body.contest, body.drawn_on)
        return await _view_of(connection, draw_id)


@public_router.get("/{draw_id}", response_model=DrawView, responses=PROBLEM_RESPONSES)
async def get_draw(draw_id: UUID, request: Request) -> DrawView:
    """A draw with its commitment, snapshot and, once completed, seed and masked winners."""
    async with _pool(request).acquire() as connection:
        return await _view_of(connection, draw_id)


@public_router.get("/{draw_id}/audit", response_model=DrawAudit, responses=PROBLEM_RESPONSES)
async def get_audit(draw_id: UUID, request: Request) -> DrawAudit:
    """Everything needed to recompute the winners (`festival draw verify`)."""
    async with _pool(request).acquire() as connection:
        return await audit_of(connection, await _existing_draw(connection, draw_id))


@public_router.get(
    "/{draw_id}/certificate.pdf",
    response_class=Response,
    responses={**PROBLEM_RESPONSES, 200: {"content": {"application/pdf": {}}}},
)
async def get_certificate(draw_id: UUID, request: Request) -> Response:
    """The draw certificate (ata do sorteio) as a PDF in Portuguese."""
    async with _pool(request).acquire() as connection:
        data = await certificate_of(connection, await _existing_draw(connection, draw_id))
    pdf = render_certificate(data)
    return Response(
        pdf, media_type="application/pdf", headers={"Content-Disposition": f'inline; filename="ata-sorteio-{draw_id}.pdf"'}
    )
