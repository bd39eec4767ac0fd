"""The AsyncAPI document of the topics, served beside the OpenAPI document.

The HTML page is rendered here from the document itself, because the usual AsyncAPI viewers load
their scripts from a CDN and nothing at run time may download from elsewhere.
"""

import html
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse

from broker.asyncapi import asyncapi_document

router = APIRouter(tags=["documentation"])


@router.get("/asyncapi.json", summary="AsyncAPI 3.0 document of the MQTT topics")
async def asyncapi_json(request: Request) -> JSONResponse:
    return JSONResponse(asyncapi_document(request.app.state.settings.topic_root))


@router.get("/asyncapi", response_class=HTMLResponse, summary="Readable list of the MQTT topics")
async def asyncapi_page(request: Request) -> HTMLResponse:
    document = asyncapi_document(request.app.state.settings.topic_root)
    rows = "".join(_channel_row(name, channel) for name, channel in sorted(document["channels"].items()))
    page = (
        "<!doctype html><html lang='pt-BR'><meta charset='utf-8'>"
        f"<title>{html.escape(document['info']['title'])}</title>"
        "<style>body{font-family:sans-serif;margin:2rem}td,th{padding:.4rem;border-bottom:1px solid #ddd;"
        "text-align:left;vertical-align:top}code{white-space:nowrap}</style>"
        f"<h1>{html.escape(document['info']['title'])}</h1>"
        "<p>Documento completo em <a href='/asyncapi.json'>/asyncapi.json</a> (AsyncAPI 3.0).</p>"
        f"<table><tr><th>Tópico</th><th>Descrição</th></tr>{rows}</table></html>"
    )
    return HTMLResponse(page)


def _channel_row(name: str, channel: dict[str, Any]) -> str:
    address = html.escape(channel.get("address", name))
    description = html.escape(channel.get("description", ""))
    return f"<tr><td><code>{address}</code></td><td>{description}</td></tr>"
