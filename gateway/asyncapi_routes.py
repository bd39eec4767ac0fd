"""The AsyncAPI document of the topics, served beside the OpenAPI document.

The HTML page is rendered here from the document itself, because the usual AsyncAPI viewers load
their scripts from a CDN and nothing at run time may download from elsewhere.
"""

import html
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse

from broker.asyncapi import asyncapi_document
from broker.connection import parse_mqtt_url
from festival.settings import Settings

router = APIRouter(tags=["documentation"])


@router.get("/asyncapi.json", summary="AsyncAPI 3.0 document of the MQTT topics")
async def asyncapi_json(request: Request) -> JSONResponse:
    return JSONResponse(_document(request.app.state.settings))


@router.get("/asyncapi", response_class=HTMLResponse, summary="Readable list of the MQTT topics")
async def asyncapi_page(request: Request) -> HTMLResponse:
    document = _document(request.app.state.settings)
    rows = "".join(_channel_row(name, channel) for name, channel in sorted(document["channels"].items()))
    page = (
        "<!doctype html><html lang='en'><meta charset='utf-8'>"
        f"<title>{html.escape(document['info']['title'])}</title>"
        "<style>body{font-family:sans-serif;margin:2rem}td,th{padding:.4rem;border-bottom:1px solid #ddd;"
        "text-align:left;vertical-align:top}code{white-space:nowrap}</style>"
        f"<h1>{html.escape(document['info']['title'])}</h1>"
        "<p>Full document: <a href='/asyncapi.json'>/asyncapi.json</a> (AsyncAPI 3.0).</p>"
        f"<table><tr><th>Topic</th><th>Description</th></tr>{rows}</table></html>"
    )
    return HTMLResponse(page)


def _channel_row(name: str, channel: dict[str, Any]) -> str:
    address = html.escape(channel.get("address", name))
    description = html.escape(channel.get("description", ""))
    return f"<tr><td><code>{address}</code></td><td>{description}</td></tr>"


def _document(settings: Settings) -> dict[str, Any]:
    server = "127.0.0.1:1883"
    if settings.mqtt_url:
        address = parse_mqtt_url(settings.mqtt_url)
        server = f"{address.host}:{address.port}"
    return asyncapi_document(settings.topic_root, server, settings.mqtt_version)
