"""The scheduler: runs periodic jobs (draw triggers, subscription expiry) until cancelled.

Each job is an async function called every `interval` seconds with the pool and settings. Jobs
must be safe to run in several scheduler instances at once (row locks or `SKIP LOCKED`), so a
second scheduler is a standby, not a hazard.
"""

import asyncio
import importlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

from festival.db import create_pool, migrate
from festival.settings import Settings

logger = logging.getLogger(__name__)

JobFunction = Callable[[asyncpg.Pool, Settings], Awaitable[object]]


@dataclass(frozen=True)
class Job:
    name: str
    run: JobFunction
    interval: float


# Modules that define `JOBS: list[Job]`; a module not written yet is skipped with a warning.
JOB_MODULES = ("producers.expiry", "producers.draw_jobs")


def load_jobs() -> list[Job]:
    jobs: list[Job] = []
    for name in JOB_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name != name:
                raise
            logger.warning("job module missing module=%s", name)
            continue
        jobs.extend(module.JOBS)
    return jobs


async def _repeat(job: Job, pool: asyncpg.Pool, settings: Settings) -> None:
    logger.info("job started name=%s interval=%.1fs", job.name, job.interval)
    while True:
        try:
            result = await job.run(pool, settings)
            if result:
                logger.info("job ran name=%s result=%s", job.name, result)
        except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError) as error:
            logger.warning("job interrupted name=%s error=%r; retrying next interval", job.name, error)
        except Exception:
            logger.exception("job failed name=%s", job.name)
        # Jitter keeps several schedulers from waking in lockstep.
        await asyncio.sleep(job.interval * random.uniform(0.9, 1.1))


async def run_scheduler(settings: Settings, jobs: list[Job] | None = None) -> None:
    """Run every job until cancelled."""
    url = settings.require_database_url()
    await migrate(url)
    pool = await create_pool(url, max_size=4)
    selected = load_jobs() if jobs is None else jobs
    tasks = [asyncio.create_task(_repeat(job, pool, settings), name=f"job-{job.name}") for job in selected]
    logger.info("scheduler started jobs=%s", [job.name for job in selected])
    try:
        await asyncio.Event().wait()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await pool.close()
        logger.info("scheduler stopped")
