"""The dashboard's polls record no spans, so they do not bury the webhooks' traces."""

from festival.settings import Settings
from tests.conftest import OPERATOR_TOKEN
from tests.gateway_support import gateway_client
from tests.telemetry_capture import install

AUTH = {"authorization": f"Bearer {OPERATOR_TOKEN}"}


async def test_dashboard_poll_untraced(settings: Settings) -> None:
    capture = install()
    async with gateway_client(settings) as client:
        capture.spans.clear()
        page = await client.get("/painel")
        figures = await client.get("/v1/dashboard", headers=AUTH)
        # Another operator request, which must still be traced.
        dead_letters = await client.get("/v1/dead-letters", headers=AUTH)

    spans = capture.finished()
    routes = {span.attributes.get("http.route") for span in spans if span.attributes}
    statements = [str(span.attributes.get("db.statement")) for span in spans if span.attributes]
    assert page.status_code == 200
    assert figures.status_code == 200
    assert dead_letters.status_code == 200
    assert "/v1/dead-letters" in routes
    assert "/painel" not in routes
    assert "/v1/dashboard" not in routes
    assert not [statement for statement in statements if "percentile_cont" in statement]
