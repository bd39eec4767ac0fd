"""Liveness and readiness probes."""

import asyncio
import logging

import asyncpg
from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.problems import ProblemError

logger = logging.getLogger(__name__)

router = APIRouter(tags=["health"])

READINESS_TIMEOUT_SECONDS = 2.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Report that the process is up; it checks nothing else."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "the database did not return a result in time"}})
async def readyz(request: Request) -> Response:
    """Report whether the database returns a query result within two seconds."""
    pool: asyncpg.Pool = request.app.state.pool
    try:
        async with asyncio.timeout(READINESS_TIMEOUT_SECONDS):
            await pool.fetchval("SELECT 1")
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        logger.warning("readiness check failed error=%s", type(error).__name__)
        raise ProblemError(
            503, "database_unavailable", "Database unavailable", "O banco de dados não respondeu à verificação."
        ) from error
    return Response('{"status":"ok"}', media_type="application/json")
