"""Running a triggered draw inside the delivery transaction: winners, notifications and the live script.

Everything the show will reveal is computed and stored here, in one transaction. A crash before the
commit leaves the draw untouched, and the redelivery recomputes the same winners from seed and
snapshot. A crash after it leaves a stored script that `draw_live` releases from the first unreleased
step.
"""

import logging
import time
from dataclasses import dataclass
from uuid import UUID

import asyncpg

from broker.tracing import current_trace_fields
from consumers.draw_store import fetch_draw, freeze, prizes_of
from festival import notifications
from festival.domain.draw_loteria import loteria_winners
from festival.domain.draws import Winner, draw_winners, snapshot_from_bytes
from festival.domain.lucky_numbers import format_number
from festival.domain.privacy import CPF_MISSING, display_name, mask_cpf
from festival.telemetry_metrics import record_draw_duration
from schemas.live import LiveWinner

logger = logging.getLogger(__name__)

RUNNABLE = ("scheduled", "closed")


@dataclass(frozen=True)
class StoredWinner:
    position: int
    number: int
    subscription_ref: str
    display_name: str
    masked_cpf: str


async def run_draw(connection: asyncpg.Connection, draw_id: UUID) -> bool:
    """Compute and store the result of a draw; return False when there is nothing to run."""
    started = time.perf_counter()
    draw = await fetch_draw(connection, draw_id, lock=True)
    if draw is None:
        logger.warning("draw trigger ignored draw_id=%s reason=unknown draw", draw_id)
        return False
    if draw["status"] not in RUNNABLE:
        logger.info("draw trigger ignored draw_id=%s status=%s reason=already run or cancelled", draw_id, draw["status"])
        return False
    if draw["mode"] == "loteria_federal" and draw["loteria_results"] is None:
        logger.error("draw trigger ignored draw_id=%s reason=loteria federal results missing", draw_id)
        return False

    if draw["status"] == "scheduled":
        await freeze(connection, draw_id)
        draw = await fetch_draw(connection, draw_id, lock=True)
        assert draw is not None

    winners = await _compute(connection, draw)
    stored = await _store_winners(connection, draw, winners)
    await _store_script(connection, draw, stored)
    await connection.execute(
        "UPDATE draws SET status = 'drawing', started_at = now(), triggered_at = coalesce(triggered_at, now()) WHERE id = $1",
        draw_id,
    )

    record_draw_duration(time.perf_counter() - started, mode=draw["mode"])
    logger.info("draw computed draw_id=%s mode=%s entries=%s winners=%d", draw_id, draw["mode"], draw["snapshot_count"], len(stored))
    return True


async def _compute(connection: asyncpg.Connection, draw: asyncpg.Record) -> list[Winner]:
    data = await connection.fetchval("SELECT numbers FROM draw_snapshots WHERE draw_id = $1", draw["id"])
    snapshot = snapshot_from_bytes(bytes(data))
    prize_count = len(prizes_of(draw))

    if draw["mode"] == "loteria_federal":
        return loteria_winners(list(draw["loteria_results"]), draw["series"], snapshot, prize_count)
    return draw_winners(draw["seed"], snapshot, prize_count)


async def _store_winners(connection: asyncpg.Connection, draw: asyncpg.Record, winners: list[Winner]) -> list[StoredWinner]:
    if not winners:
        return []
    rows = await connection.fetch(
        "SELECT n.number, n.subscription_ref, c.name, c.cpf FROM lucky_numbers n"
        " LEFT JOIN customers c ON c.subscription_ref = n.subscription_ref"
        " WHERE n.draw_id = $1 AND n.number = ANY($2::bigint[])",
        draw["id"], [winner.number for winner in winners],
    )
    holders = {row["number"]: row for row in rows}
    prizes = prizes_of(draw)

    stored = []
    for winner in winners:
        holder = holders[winner.number]
        stored.append(StoredWinner(
            position=winner.position,
            number=winner.number,
            subscription_ref=holder["subscription_ref"],
            display_name=display_name(holder["name"]),
            masked_cpf=mask_cpf(holder["cpf"]),
        ))
        body = notifications.prize_won(draw["title"], format_number(winner.number, draw["series"]), prizes[winner.position - 1])
        await notifications.enqueue(connection, holder["subscription_ref"], "prize_won", body)

    await connection.executemany(
        "INSERT INTO draw_winners (draw_id, position, number, subscription_ref, display_name, masked_cpf)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        [(draw["id"], item.position, item.number, item.subscription_ref, item.display_name, item.masked_cpf) for item in stored],
    )
    return stored


def live_winner(item: StoredWinner, series: int) -> LiveWinner:
    return LiveWinner(
        position=item.position,
        number=item.number,
        number_display=format_number(item.number, series),
        display_name=item.display_name,
        cpf_masked=None if item.masked_cpf == CPF_MISSING else item.masked_cpf,
    )


async def _store_script(connection: asyncpg.Connection, draw: asyncpg.Record, stored: list[StoredWinner]) -> None:
    """Store the live steps: started, then a number and its winner per prize, then finished."""
    draw_id = str(draw["id"])
    steps: list[dict[str, object]] = [{"draw_id": draw_id, "kind": "started"}]
    for item in stored:
        display = format_number(item.number, draw["series"])
        steps.append({"draw_id": draw_id, "kind": "number_drawn", "position": item.position, "number": item.number, "number_display": display})
        steps.append({
            "draw_id": draw_id, "kind": "winner", "position": item.position, "number": item.number, "number_display": display,
            "winner": live_winner(item, draw["series"]).model_dump(mode="json"),
        })
    steps.append({"draw_id": draw_id, "kind": "finished"})

    trace_fields = current_trace_fields() or None
    await connection.executemany(
        "INSERT INTO draw_live_steps (draw_id, sequence, kind, payload, trace_fields) VALUES ($1, $2, $3, $4, $5)",
        [
            (draw["id"], sequence, step["kind"], {**step, "sequence": sequence}, trace_fields)
            for sequence, step in enumerate(steps, start=1)
        ],
    )
