"""The inbox side of webhook ingest: record a delivery once, or find what it produced before."""

import json
from dataclasses import dataclass
from uuid import UUID

import asyncpg
from starlette.types import Send

from festival import wakeups
from gateway.intake import SignedDelivery

# A conflict on either key (webhook-id, or the partner's event id) means the delivery was
# recorded before. The caller then rolls back and responds with the stored event ids. A new
# delivery also sets `festival.defer_notify` for the rest of the transaction (`festival.wakeups`).
INSERT_DELIVERY = """
INSERT INTO inbox (partner, delivery_id, endpoint, signed_at, body, event_ids, partner_event_id)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT DO NOTHING
RETURNING set_config('festival.defer_notify', $8, true) IS NOT NULL
"""

SELECT_STORED_EVENT_IDS = """
SELECT event_ids FROM inbox
WHERE partner = $1 AND (delivery_id = $2 OR partner_event_id = $3)
LIMIT 1
"""


@dataclass(frozen=True)
class IngestResult:
    event_ids: list[UUID]
    duplicate: bool

    async def send_response(self, send: Send) -> None:
        """Send 202 for a delivery recorded now, 200 for one recorded before, with the event ids."""
        body = json.dumps({
            "status": "duplicate" if self.duplicate else "accepted",
            "event_ids": [str(event_id) for event_id in self.event_ids],
        }).encode()
        await send({
            "type": "http.response.start",
            "status": 200 if self.duplicate else 202,
            "headers": [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")],
        })
        await send({"type": "http.response.body", "body": body})


class AlreadyRecorded(Exception):
    """Raised inside the ingest transaction to roll it back; carries the stored event ids."""

    def __init__(self, event_ids: list[UUID]) -> None:
        super().__init__(f"delivery already recorded events={len(event_ids)}")
        self.event_ids = event_ids


async def record_delivery(
    connection: asyncpg.Connection,
    delivery: SignedDelivery,
    event_ids: list[UUID],
    partner_event_id: str | None = None,
) -> bool:
    """Insert the delivery into the inbox; return False if it, or its event, was recorded before.

    Inside `wakeups.deferred()` the outbox trigger then stays silent for the rest of the transaction.
    """
    inserted = await connection.fetchval(
        INSERT_DELIVERY,
        delivery.partner,
        delivery.webhook_id,
        delivery.endpoint,
        delivery.signed_at,
        delivery.body,
        event_ids,
        partner_event_id,
        wakeups.defer_setting(),
    )
    return bool(inserted)


async def stored_event_ids(
    connection: asyncpg.Connection, delivery: SignedDelivery, partner_event_id: str | None = None
) -> list[UUID]:
    """Return the event ids recorded for this delivery or event, or [] if none was recorded."""
    event_ids = await connection.fetchval(
        SELECT_STORED_EVENT_IDS, delivery.partner, delivery.webhook_id, partner_event_id
    )
    return list(event_ids or [])
