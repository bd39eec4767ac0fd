"""The API documents: AsyncAPI of the topics and OpenAPI, served without any CDN."""

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


async def test_document_names_configured_broker(settings: Settings) -> None:
    async with gateway_client(settings) as client:
        response = await client.get("/asyncapi.json")

    servers = response.json()["servers"]
    hosts = {server["host"] for server in servers.values()}
    assert hosts == {f"127.0.0.1:{settings.mqtt_url.rsplit(':', 1)[1]}"}


async def test_docs_page_loads_nothing_external(settings: Settings) -> None:
    async with gateway_client(settings) as client:
        page = await client.get("/docs")
        script = await client.get("/static-offline-docs/swagger-ui-bundle.js")

    assert page.status_code == 200
    assert "cdn." not in page.text
    assert script.status_code == 200
