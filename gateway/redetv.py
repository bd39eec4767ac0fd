"""REDETV!PLUS webhook endpoint: subscription lifecycle events and `user.updated`.

In one transaction it records the delivery in the inbox, the user's personal data in `customers`
and the canonical `SubscriptionUpdated` event in the outbox. Events carry ids, plan and times only.
"""

import logging

import asyncpg
import stamina
from fastapi import APIRouter, Request
from starlette.responses import Response

from broker.envelope import Envelope
from festival.outbox import Outbox, envelope_for
from gateway.inbox import AlreadyRecorded, IngestResult, record_delivery, stored_event_ids
from gateway.intake import SignedDelivery, parse_body, receive_signed
from gateway.openapi import WEBHOOK_RESPONSES, signed_json_body
from schemas.events import SubscriptionUpdated
from schemas.redetv import RedetvUser, RedetvWebhook

logger = logging.getLogger(__name__)

router = APIRouter(tags=["webhooks"])

SOURCE = "/gateway/redetv"

# Every event repeats the user; the write (and its dead row) is skipped when nothing changed.
UPSERT_CUSTOMER = """
INSERT INTO customers AS known (subscription_ref, user_id, name, email, cpf, phone)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (subscription_ref) DO UPDATE SET
    user_id = EXCLUDED.user_id,
    name = coalesce(EXCLUDED.name, known.name),
    email = coalesce(EXCLUDED.email, known.email),
    cpf = coalesce(EXCLUDED.cpf, known.cpf),
    phone = coalesce(EXCLUDED.phone, known.phone),
    updated_at = now()
WHERE (known.user_id, known.name, known.email, known.cpf, known.phone)
    IS DISTINCT FROM (EXCLUDED.user_id, coalesce(EXCLUDED.name, known.name), coalesce(EXCLUDED.email, known.email),
                      coalesce(EXCLUDED.cpf, known.cpf), coalesce(EXCLUDED.phone, known.phone))
"""

# NOTE: `user.updated` reaches only the subscriptions whose customer row or subscription row
# already names the user. The data of a user whose first subscription event has not arrived is lost.
UPDATE_USER = """
UPDATE customers SET
    user_id = $1,
    name = coalesce($2, name), email = coalesce($3, email), cpf = coalesce($4, cpf), phone = coalesce($5, phone),
    updated_at = now()
WHERE user_id = $1 OR subscription_ref IN (SELECT ref FROM subscriptions WHERE user_id = $1)
"""


def translate(webhook: RedetvWebhook) -> SubscriptionUpdated | None:
    """Return the canonical event of a lifecycle webhook; `user.updated` has none."""
    subscription = webhook.subscription
    if webhook.event == "user.updated" or subscription is None:
        return None
    return SubscriptionUpdated(
        subscription_ref=subscription.id,
        user_id=subscription.user_id,
        kind=webhook.event.removeprefix("subscription."),  # type: ignore[arg-type]
        plan=subscription.plan,
        occurred_at=webhook.occurred_at,
        partner_event_id=webhook.event_id,
        partner_status=subscription.status,
        current_period_end=subscription.current_period_end,
    )


@router.post("/webhooks/redetv", status_code=202, responses=WEBHOOK_RESPONSES, openapi_extra=signed_json_body(RedetvWebhook))
async def receive_redetv_event(request: Request) -> Response:
    """Receive one signed REDETV!PLUS subscription or user event."""
    state = request.app.state
    delivery = await receive_signed(request, "redetv")
    webhook = parse_body(delivery, RedetvWebhook)
    result = await ingest_redetv_event(state.pool, state.outbox, delivery, webhook)
    return result.to_response()


@stamina.retry(on=asyncpg.DeadlockDetectedError, attempts=3)
async def ingest_redetv_event(
    pool: asyncpg.Pool, outbox: Outbox, delivery: SignedDelivery, webhook: RedetvWebhook
) -> IngestResult:
    """Record a REDETV!PLUS event, its user and its canonical event in one transaction."""
    canonical = translate(webhook)
    entries: list[tuple[str, Envelope]] = []
    if canonical is not None:
        entries.append((canonical.TOPIC, envelope_for(canonical, source=SOURCE, subject=canonical.subscription_ref)))
    event_ids = [envelope.id for _, envelope in entries]

    async with pool.acquire() as connection:
        try:
            async with connection.transaction():
                if not await record_delivery(connection, delivery, event_ids, webhook.event_id):
                    raise AlreadyRecorded(await stored_event_ids(connection, delivery, webhook.event_id))
                if webhook.user is not None:
                    await _record_user(connection, webhook, webhook.user)
                await outbox.enqueue_envelopes(connection, entries)
        except AlreadyRecorded as duplicate:
            logger.info("redetv event already recorded webhook_id=%s redetv_event_id=%s", delivery.webhook_id, webhook.event_id)
            return IngestResult(duplicate.event_ids, duplicate=True)

    logger.debug(
        "redetv event accepted webhook_id=%s redetv_event_id=%s type=%s subscription_ref=%s",
        delivery.webhook_id, webhook.event_id, webhook.event,
        webhook.subscription.id if webhook.subscription else None,
    )
    return IngestResult(event_ids, duplicate=False)


async def _record_user(connection: asyncpg.Connection, webhook: RedetvWebhook, user: RedetvUser) -> None:
    personal = user.personal_data()
    values = (personal["name"], personal["email"], personal["cpf"], personal["phone"])
    if webhook.subscription is not None:
        await connection.execute(UPSERT_CUSTOMER, webhook.subscription.id, user.id, *values)
    else:
        await connection.execute(UPDATE_USER, user.id, *values)
