"""NIX webhook endpoints: charge events and the API Pix callbacks NIX forwards."""

from starlette.datastructures import State

from gateway.inbox import IngestResult
from gateway.intake import SignedDelivery
from gateway.nix_events import ingest_nix_event
from gateway.nix_pix import ingest_pix_callback
from gateway.webhook_route import WebhookEndpoint, WebhookRoute
from schemas.nix import NixEvent
from schemas.pix import PixCallback


async def receive_nix_event(state: State, delivery: SignedDelivery, event: NixEvent) -> IngestResult:
    """Receive one signed NIX charge event."""
    if event.txid is None:
        result: IngestResult = await state.nix_writer.submit(delivery, event)
        return result
    return await ingest_nix_event(state.pool, state.outbox, delivery, event)


async def receive_pix_callback(state: State, delivery: SignedDelivery, callback: PixCallback) -> IngestResult:
    """Receive a signed API Pix callback (`{"pix": [...]}`) forwarded by NIX."""
    return await ingest_pix_callback(state.pool, state.outbox, delivery, callback)


routes = [
    WebhookRoute("/webhooks/nix", WebhookEndpoint("nix", NixEvent, receive_nix_event)),
    WebhookRoute("/webhooks/nix/pix", WebhookEndpoint("nix", PixCallback, receive_pix_callback)),
]
