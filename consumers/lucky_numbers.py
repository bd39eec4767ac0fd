"""Issuing and voiding lucky numbers in PostgreSQL; the numbers come from the draw's keyed permutation.

The k-th number issued in a draw is `permute(key, N, k)`: the counter `draws.issued_count` is
advanced under the draw's row lock, so numbers are unique within a draw without any retry on
collisions.
"""

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from uuid import UUID

import asyncpg

from festival.domain.lucky_numbers import permute

logger = logging.getLogger(__name__)

NUMBERS_PER_SERIES = 100_000


@dataclass(frozen=True)
class Reservation:
    """Numbers reserved for a charge in a draw, or a grant waiting for one (`draw_id` None, no numbers).

    The caller inserts `numbers` into `lucky_numbers` in the same transaction.
    """

    draw_id: UUID | None
    numbers: list[int]
    draw_title: str | None = None
    draw_scheduled_at: datetime | None = None


# One round trip: check that the charge is confirmed and has no grant yet, advance the counter of
# the next open draw with room (its row lock serialises issuing within the draw) and record the
# grant, with a NULL draw when none is open. No row comes back when nothing is due.
RESERVE = """
WITH payment AS (
    SELECT p.charge_id FROM payments AS p
    WHERE p.charge_id = $1 AND p.status = 'confirmed'
      AND NOT EXISTS (SELECT 1 FROM lucky_number_grants AS g WHERE g.charge_id = $1)
), draw AS (
    UPDATE draws SET issued_count = issued_count + $3
    WHERE EXISTS (SELECT 1 FROM payment)
      AND id = (SELECT id FROM draws WHERE status = 'scheduled' AND cutoff_at > now()
                AND issued_count + $3 <= series * $4
                ORDER BY cutoff_at, id LIMIT 1 FOR UPDATE)
    RETURNING id, number_key, series, issued_count, title, scheduled_at
), grant_row AS (
    INSERT INTO lucky_number_grants (charge_id, subscription_ref, quantity, draw_id)
    SELECT payment.charge_id, $2, $3, (SELECT draw.id FROM draw) FROM payment
)
SELECT draw.id, draw.number_key, draw.series, draw.issued_count, draw.title, draw.scheduled_at
FROM payment LEFT JOIN draw ON true
"""


def quantity_for(amount: Decimal, price: Decimal) -> int:
    """Return how many lucky numbers a payment of `amount` earns: one per `price`, at least one."""
    return max(1, int(amount // price))


async def reserve(connection: asyncpg.Connection, charge_id: str, subscription_ref: str, quantity: int) -> Reservation | None:
    """Grant `quantity` numbers for a confirmed charge in the next open draw with room for them.

    Return None when the charge is not confirmed (refunded or charged back first) or was granted
    already. With no open draw the grant waits until `issue_waiting_grants` runs for a new draw.
    """
    row = await connection.fetchrow(RESERVE, charge_id, subscription_ref, quantity, NUMBERS_PER_SERIES)
    if row is None:
        return None
    if row["id"] is None:
        logger.info("grant waiting for a draw charge_id=%s quantity=%d", charge_id, quantity)
        return Reservation(None, [])
    return Reservation(row["id"], _numbers(row, quantity), row["title"], row["scheduled_at"])


def _numbers(draw: asyncpg.Record, quantity: int) -> list[int]:
    """Return the last `quantity` numbers of the draw's permutation, up to its `issued_count`."""
    space = draw["series"] * NUMBERS_PER_SERIES
    first = draw["issued_count"] - quantity
    return [permute(bytes(draw["number_key"]), space, index) for index in range(first, first + quantity)]


async def _insert_numbers(
    connection: asyncpg.Connection, draw: asyncpg.Record, charge_id: str, subscription_ref: str, quantity: int
) -> list[int]:
    numbers = _numbers(draw, quantity)
    await connection.executemany(
        "INSERT INTO lucky_numbers (draw_id, number, subscription_ref, charge_id) VALUES ($1, $2, $3, $4)",
        [(draw["id"], number, subscription_ref, charge_id) for number in numbers],
    )
    return numbers


async def issue_waiting_grants(connection: asyncpg.Connection, draw_id: UUID) -> int:
    """Issue, in draw `draw_id`, the numbers of grants that waited for an open draw; return the count."""
    draw = await connection.fetchrow(
        "SELECT id, number_key, series, issued_count FROM draws WHERE id = $1 FOR UPDATE", draw_id
    )
    grants = await connection.fetch(
        "SELECT charge_id, subscription_ref, quantity FROM lucky_number_grants"
        " WHERE draw_id IS NULL ORDER BY created_at, charge_id FOR UPDATE"
    )
    issued = 0
    room = draw["series"] * NUMBERS_PER_SERIES - draw["issued_count"]
    for grant in grants:
        if grant["quantity"] > room:
            break
        draw = await connection.fetchrow(
            "UPDATE draws SET issued_count = issued_count + $2 WHERE id = $1 RETURNING id, number_key, series, issued_count",
            draw_id, grant["quantity"],
        )
        await _insert_numbers(connection, draw, grant["charge_id"], grant["subscription_ref"], grant["quantity"])
        await connection.execute("UPDATE lucky_number_grants SET draw_id = $2 WHERE charge_id = $1", grant["charge_id"], draw_id)
        room -= grant["quantity"]
        issued += grant["quantity"]
    return issued


async def void(connection: asyncpg.Connection, charge_id: str) -> int:
    """Void the numbers of a charge in draws that have not closed; return how many were voided.

    Numbers in a closed, drawing or completed draw stay: the entries were frozen at cut-off.
    """
    result = await connection.execute(
        "UPDATE lucky_numbers AS n SET voided_at = now() FROM draws AS d"
        " WHERE n.draw_id = d.id AND n.charge_id = $1 AND n.voided_at IS NULL AND d.status = 'scheduled'",
        charge_id,
    )
    await connection.execute(
        "DELETE FROM lucky_number_grants WHERE charge_id = $1 AND draw_id IS NULL", charge_id
    )
    return int(result.split()[-1])
