"""The AsyncAPI document served beside the OpenAPI document."""

from festival.settings import Settings
from tests.gateway_support import gateway_client


async def test_document_lists_topics(settings: Settings) -> None:
    async with gateway_client(settings) as client:
        response = await client.get("/asyncapi.json")

    addresses = {channel["address"] for channel in response.json()["channels"].values()}
    assert response.status_code == 200
    assert f"{settings.topic_root}/payments/confirmed" in addresses
    assert f"{settings.topic_root}/draws/{{draw_id}}/state" in addresses


async def test_page_loads_nothing_external(settings: Settings) -> None:
    async with gateway_client(settings) as client:
        response = await client.get("/asyncapi")

    assert response.status_code == 200
    assert "payments/confirmed" in response.text
    assert "http://" not in response.text
    assert "https://" not in response.text
