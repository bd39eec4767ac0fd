"""Operator API for dead letters: list the open ones and replay one.

A replay marks the dead letter replayed and resets its delivery to pending and due now, in one
transaction. The relay then publishes the event again to that consumer.
"""

import logging
from datetime import datetime
from typing import Annotated
from uuid import UUID

import asyncpg
from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel

from gateway.auth import require_operator
from gateway.problems import PROBLEM_RESPONSES, ProblemError

logger = logging.getLogger(__name__)

# `dead_letters.id` is a bigserial, so a larger id cannot exist and asyncpg cannot even send it.
BIGINT_MAX = 2**63 - 1

router = APIRouter(prefix="/v1/dead-letters", tags=["operator"], dependencies=[Depends(require_operator)])


class DeadLetterView(BaseModel):
    id: int
    event_id: UUID
    consumer: str
    topic: str
    error: str
    attempts: int
    created_at: datetime


class DeadLetterPage(BaseModel):
    items: list[DeadLetterView]
    next_after: int | None = None
    """Pass as `after` to read the next page; null on the last page."""


class ReplayView(BaseModel):
    id: int
    event_id: UUID
    consumer: str
    replayed_at: datetime


SELECT_OPEN = """
SELECT id, event_id, consumer, topic, error, attempts, created_at
FROM dead_letters
WHERE replayed_at IS NULL AND id > $1
ORDER BY id
LIMIT $2
"""

# The WHERE on replayed_at makes a second or concurrent replay find no row, hence 409.
MARK_REPLAYED = """
UPDATE dead_letters SET replayed_at = now()
WHERE id = $1 AND replayed_at IS NULL
RETURNING id, event_id, consumer, replayed_at
"""

RESET_DELIVERY = """
INSERT INTO deliveries (event_id, consumer, status, attempts, due_at)
VALUES ($1, $2, 'pending', 0, now())
ON CONFLICT (event_id, consumer) DO UPDATE SET status = 'pending', attempts = 0, due_at = now()
"""


@router.get("", response_model=DeadLetterPage, responses=PROBLEM_RESPONSES)
async def list_dead_letters(
    request: Request,
    after: Annotated[int, Query(ge=0, le=BIGINT_MAX, description="id of the last dead letter of the previous page")] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> DeadLetterPage:
    """List dead letters not replayed yet, oldest first."""
    pool: asyncpg.Pool = request.app.state.pool
    rows = await pool.fetch(SELECT_OPEN, after, limit + 1)

    items = [DeadLetterView(**dict(row)) for row in rows[:limit]]
    next_after = items[-1].id if len(rows) > limit else None
    return DeadLetterPage(items=items, next_after=next_after)


@router.post("/{dead_letter_id}/replay", response_model=ReplayView, responses=PROBLEM_RESPONSES)
async def replay_dead_letter(dead_letter_id: Annotated[int, Path(le=BIGINT_MAX)], request: Request) -> ReplayView:
    """Deliver a dead-lettered event to its consumer again."""
    pool: asyncpg.Pool = request.app.state.pool
    async with pool.acquire() as connection, connection.transaction():
        replayed = await connection.fetchrow(MARK_REPLAYED, dead_letter_id)
        if replayed is None:
            exists = await connection.fetchval("SELECT true FROM dead_letters WHERE id = $1", dead_letter_id)
            raise _not_replayable(dead_letter_id, exists=bool(exists))
        await connection.execute(RESET_DELIVERY, replayed["event_id"], replayed["consumer"])

    logger.info(
        "dead letter replayed id=%s event_id=%s consumer=%s", dead_letter_id, replayed["event_id"], replayed["consumer"]
    )
    return ReplayView(**dict(replayed))


def _not_replayable(dead_letter_id: int, *, exists: bool) -> ProblemError:
    if exists:
        return ProblemError(
            409,
            "dead_letter_already_replayed",
            "Dead letter already replayed",
            f"A mensagem morta {dead_letter_id} já foi reenviada; consulte a entrega do evento.",
        )
    return ProblemError(
        404, "dead_letter_not_found", "Dead letter not found", f"Não existe mensagem morta com o id {dead_letter_id}."
    )
