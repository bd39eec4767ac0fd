"""NIX webhook endpoints: charge events and the API Pix callbacks NIX forwards."""

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.intake import parse_body, receive_signed
from gateway.nix_events import ingest_nix_event
from gateway.nix_pix import ingest_pix_callback
from gateway.openapi import WEBHOOK_RESPONSES, signed_json_body
from schemas.nix import NixEvent
from schemas.pix import PixCallback

router = APIRouter(tags=["webhooks"])


@router.post("/webhooks/nix", status_code=202, responses=WEBHOOK_RESPONSES, openapi_extra=signed_json_body(NixEvent))
async def receive_nix_event(request: Request) -> Response:
    """Receive one signed NIX charge event."""
    state = request.app.state
    delivery = await receive_signed(request, "nix")
    event = parse_body(delivery, NixEvent)
    if event.txid is None:
        result = await state.nix_writer.submit(delivery, event)
    else:
        result = await ingest_nix_event(state.pool, state.outbox, delivery, event)
    return result.to_response()


@router.post("/webhooks/nix/pix", status_code=202, responses=WEBHOOK_RESPONSES, openapi_extra=signed_json_body(PixCallback))
async def receive_pix_callback(request: Request) -> Response:
    """Receive a signed API Pix callback (`{"pix": [...]}`) forwarded by NIX."""
    state = request.app.state
    delivery = await receive_signed(request, "nix")
    callback = parse_body(delivery, PixCallback)
    result = await ingest_pix_callback(state.pool, state.outbox, delivery, callback)
    return result.to_response()
