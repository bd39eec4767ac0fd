"""The draws consumer: runs each triggered draw once, then shows it live at the draw's pace.

`apply` (on `draws/triggered`) stores the winners and the live script in the delivery transaction;
`run_background` releases the script step by step (see `consumers.draw_live`).
"""

import logging
from uuid import UUID

import asyncpg

from broker.envelope import Envelope
from consumers.delivery import Apply
from consumers.draw_live import run_show
from consumers.draw_run import run_draw
from festival.settings import Settings
from schemas.events import DrawTriggered

logger = logging.getLogger(__name__)

NAME = "draws"


def build(settings: Settings) -> Apply:
    async def apply(connection: asyncpg.Connection, envelope: Envelope) -> None:
        event = DrawTriggered.model_validate(envelope.data)
        logger.info("draw triggered draw_id=%s by=%s event_id=%s", event.draw_id, event.triggered_by, envelope.id)
        await run_draw(connection, UUID(event.draw_id))

    return apply


async def run_background(settings: Settings, pool: asyncpg.Pool) -> None:
    await run_show(settings, pool)
