"""OpenAPI for routes that read their body themselves (the signed webhooks).

Those routes read the raw body, because the signature covers the bytes as received, so FastAPI
cannot infer their body schema. `signed_json_body` declares it and registers the
model's schemas, which `install_openapi_components` adds to the document.
"""

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from gateway.problems import PROBLEM_RESPONSES

_COMPONENTS: dict[str, Any] = {}

SIGNATURE_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


# Responses of every partner webhook route. `gateway.inbox.IngestResult.send_response` sends the 200 and 202.
WEBHOOK_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"description": "accepted: recorded with the ids of the events it produced"},
    200: {"description": "already recorded: the ids of the events the first delivery produced"},
    **PROBLEM_RESPONSES,
}


def signed_json_body(model: type[BaseModel]) -> dict[str, Any]:
    """Return `openapi_extra` for a route whose JSON body is `model`, signed with Standard Webhooks."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    _COMPONENTS.update(schema.pop("$defs", {}))
    _COMPONENTS[model.__name__] = schema
    return {
        "parameters": [
            {"name": name, "in": "header", "required": True, "schema": {"type": "string"}}
            for name in SIGNATURE_HEADERS
        ],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
        },
    }


def install_openapi_components(app: FastAPI) -> None:
    """Make `app.openapi()` include the schemas registered by `signed_json_body`."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            document.setdefault("components", {}).setdefault("schemas", {}).update(_COMPONENTS)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
