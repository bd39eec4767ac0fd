"""The live draw page at `/ao-vivo`: its HTML, its scripts and the broker settings it connects with.

The browser subscribes to the public draw topics itself over MQTT on WebSockets, with the
read-only `screen` user of `FESTIVAL_MQTT_WS_URL`. The broker's ACL allows that user only to
read `draws/current`, `draws/+/state` and `draws/+/live`, so its password is public by design.
"""

import html
import logging
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit
from uuid import UUID

from fastapi import APIRouter, Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response

from festival.settings import Settings
from gateway.problems import ProblemError

logger = logging.getLogger(__name__)

router = APIRouter(tags=["live"])

PACKAGE_DIR = Path(__file__).resolve().parent
STATIC_DIR = PACKAGE_DIR / "static"
TEMPLATE = PACKAGE_DIR / "templates" / "live.html"
# `npm ci` (run by `./dev`) installs the pinned mqtt package at the top of the checkout.
# NOTE: an installed wheel has no node_modules beside it; the page then falls back to SSE.
MQTT_BUNDLE = PACKAGE_DIR.parent / "node_modules" / "mqtt" / "dist" / "mqtt.min.js"

STATIC_FILES = {"live.js": "text/javascript", "live.css": "text/css"}
# The page's scripts change with the code, so browsers revalidate them on every load.
NO_CACHE = {"Cache-Control": "no-cache"}


def screen_config(settings: Settings) -> dict[str, Any]:
    """Return the page's transport settings; `mqtt` is null when no WebSocket URL is configured."""
    config: dict[str, Any] = {"topic_root": settings.topic_root, "mqtt": None}
    if settings.mqtt_ws_url is None:
        return config

    parts = urlsplit(settings.mqtt_ws_url.get_secret_value())
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        logger.error("live screen config invalid FESTIVAL_MQTT_WS_URL scheme=%s", parts.scheme)
        return config

    netloc = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    config["mqtt"] = {
        "url": urlunsplit((parts.scheme, netloc, parts.path or "/", "", "")),
        "username": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
    }
    return config


def render_page(draw_id: UUID | None) -> HTMLResponse:
    page = TEMPLATE.read_text(encoding="utf-8")
    value = html.escape(str(draw_id)) if draw_id else ""
    return HTMLResponse(page.replace("{{draw_id}}", value), headers=NO_CACHE)


@router.get("/ao-vivo", response_class=HTMLResponse)
async def live_current() -> HTMLResponse:
    """Serve the page that follows the draw named on `draws/current`."""
    return render_page(None)


@router.get("/ao-vivo/config.json")
async def live_config(request: Request) -> JSONResponse:
    """Return the broker's WebSocket URL, the read-only screen credentials and the topic root."""
    return JSONResponse(screen_config(request.app.state.settings), headers=NO_CACHE)


@router.get("/ao-vivo/static/mqtt.min.js")
async def live_mqtt_bundle() -> Response:
    """Serve the browser bundle of the npm `mqtt` package pinned in package.json."""
    if not MQTT_BUNDLE.is_file():
        logger.warning("live screen mqtt bundle missing path=%s", MQTT_BUNDLE)
        raise ProblemError(
            404, "mqtt_bundle_missing", "MQTT bundle not installed",
            "O pacote mqtt não está instalado: rode ./dev para instalá-lo.",
        )
    return FileResponse(MQTT_BUNDLE, media_type="text/javascript", headers=NO_CACHE)


@router.get("/ao-vivo/static/{name}")
async def live_static(name: str) -> Response:
    """Serve the page's own script and style sheet."""
    media_type = STATIC_FILES.get(name)
    if media_type is None:
        raise ProblemError(404, "not_found", "Not found", f"Arquivo {name!r} não encontrado.")
    return FileResponse(STATIC_DIR / name, media_type=media_type, headers=NO_CACHE)


@router.get("/ao-vivo/{draw_id}", response_class=HTMLResponse)
async def live_draw(draw_id: UUID) -> HTMLResponse:
    """Serve the page that follows one draw."""
    return render_page(draw_id)
