"""REDETV!PLUS webhook endpoint: subscription lifecycle events and `user.updated`.

In one transaction it records the delivery in the inbox, the user's personal data in `redetv_users`
and `customers`, and the canonical `SubscriptionUpdated` event in the outbox. Events carry ids, plan and times only.
"""

import logging

import asyncpg
import stamina
from starlette.datastructures import State

from broker.envelope import Envelope
from festival import wakeups
from festival.outbox import Outbox, envelope_for
from gateway.inbox import AlreadyRecorded, IngestResult, record_delivery, stored_event_ids
from gateway.intake import SignedDelivery
from gateway.webhook_route import WebhookEndpoint, WebhookRoute
from schemas.events import SubscriptionUpdated
from schemas.redetv import RedetvWebhook

logger = logging.getLogger(__name__)

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

# A field sent with an older `occurred_at` fills only what the newer data left empty, so the
# merged user does not depend on the order in which the events arrive.
MERGE_USER = """
INSERT INTO redetv_users AS known (user_id, name, email, cpf, phone, occurred_at)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (user_id) DO UPDATE SET
    name = CASE WHEN EXCLUDED.occurred_at >= known.occurred_at
                THEN coalesce(EXCLUDED.name, known.name) ELSE coalesce(known.name, EXCLUDED.name) END,
    email = CASE WHEN EXCLUDED.occurred_at >= known.occurred_at
                 THEN coalesce(EXCLUDED.email, known.email) ELSE coalesce(known.email, EXCLUDED.email) END,
    cpf = CASE WHEN EXCLUDED.occurred_at >= known.occurred_at
               THEN coalesce(EXCLUDED.cpf, known.cpf) ELSE coalesce(known.cpf, EXCLUDED.cpf) END,
    phone = CASE WHEN EXCLUDED.occurred_at >= known.occurred_at
                 THEN coalesce(EXCLUDED.phone, known.phone) ELSE coalesce(known.phone, EXCLUDED.phone) END,
    occurred_at = greatest(known.occurred_at, EXCLUDED.occurred_at),
    updated_at = now()
RETURNING name, email, cpf, phone
"""

KNOWN_USER = "SELECT name, email, cpf, phone FROM redetv_users WHERE user_id = $1"

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


async def receive_redetv_event(state: State, delivery: SignedDelivery, webhook: RedetvWebhook) -> IngestResult:
    """Receive one signed REDETV!PLUS subscription or user event."""
    return await ingest_redetv_event(state.pool, state.outbox, delivery, webhook)


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

    # The commit sends no NOTIFY, which would make it wait for other commits (`festival.wakeups`).
    # The relay is woken after the commit, before the response.
    with wakeups.deferred() as channels:
        async with pool.acquire() as connection:
            try:
                async with connection.transaction():
                    if not await record_delivery(connection, delivery, event_ids, webhook.event_id):
                        raise AlreadyRecorded(await stored_event_ids(connection, delivery, webhook.event_id))
                    await _record_user(connection, webhook)
                    await outbox.enqueue_envelopes(connection, entries)
            except AlreadyRecorded as duplicate:
                logger.info("redetv event already recorded webhook_id=%s redetv_event_id=%s", delivery.webhook_id, webhook.event_id)
                return IngestResult(duplicate.event_ids, duplicate=True)
            await wakeups.send(connection, channels)

    logger.debug(
        "redetv event accepted webhook_id=%s redetv_event_id=%s type=%s subscription_ref=%s",
        delivery.webhook_id, webhook.event_id, webhook.event,
        webhook.subscription.id if webhook.subscription else None,
    )
    return IngestResult(event_ids, duplicate=False)


async def _record_user(connection: asyncpg.Connection, webhook: RedetvWebhook) -> None:
    """Merge the event's user data, if any, and copy the merged user to its customer rows."""
    subscription = webhook.subscription
    if webhook.user is not None:
        user_id = webhook.user.id
        personal = webhook.user.personal_data()
        merged = await connection.fetchrow(
            MERGE_USER, user_id, personal["name"], personal["email"], personal["cpf"], personal["phone"],
            webhook.occurred_at,
        )
    elif subscription is not None:
        # A subscription event without a user still picks up a `user.updated` that came first.
        user_id = subscription.user_id
        merged = await connection.fetchrow(KNOWN_USER, user_id)
    else:
        return

    if merged is None:
        return
    values = (merged["name"], merged["email"], merged["cpf"], merged["phone"])
    if subscription is not None:
        await connection.execute(UPSERT_CUSTOMER, subscription.id, user_id, *values)
    else:
        await connection.execute(UPDATE_USER, user_id, *values)


routes = [WebhookRoute("/webhooks/redetv", WebhookEndpoint("redetv", RedetvWebhook, receive_redetv_event))]
