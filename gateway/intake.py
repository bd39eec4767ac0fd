"""The checks every partner webhook passes before it is translated, in this order:

body size (413), content type (415), signature (401), UTF-8 (400), JSON (400), fields (422).
Each failure raises a `ProblemError` with a Portuguese detail; no body or field value is echoed.
"""

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, SecretStr, ValidationError
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope

from gateway.problems import ProblemError, field_errors, invalid_fields
from gateway.signing import WebhookVerifier
from schemas.problems import FieldError

logger = logging.getLogger(__name__)

ModelT = TypeVar("ModelT", bound=BaseModel)


@dataclass(frozen=True)
class SignedDelivery:
    """A webhook whose signature was verified, with its body as received."""

    partner: str
    endpoint: str
    webhook_id: str
    signed_at: datetime
    body: bytes


def header_values(scope: Scope) -> dict[str, str]:
    """Return the request headers by lower-case name. A repeated header keeps its first value.

    ASGI servers send header names in lower case, as Starlette's `Headers` also expects.
    """
    headers: dict[str, str] = {}
    for name, value in scope["headers"]:
        headers.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    return headers


async def read_body(headers: Mapping[str, str], receive: Receive, max_bytes: int) -> bytes:
    """Read the body, stopping with 413 as soon as it passes `max_bytes`."""
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)

    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(max_bytes)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _too_large(max_bytes: int) -> ProblemError:
    return ProblemError(
        413, "body_too_large", "Request body too large", f"O corpo da requisição passa do limite de {max_bytes} bytes."
    )


def check_json_content_type(content_type: str) -> None:
    """Accept `application/json` (or a `+json` type) in UTF-8 only; raise 415 otherwise."""
    media_type, _, parameters = content_type.partition(";")
    media_type = media_type.strip().lower()
    is_json = media_type == "application/json" or (media_type.startswith("application/") and media_type.endswith("+json"))

    charset = "utf-8"
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()

    if not is_json or charset not in ("utf-8", "utf8"):
        raise ProblemError(
            415,
            "unsupported_media_type",
            "Unsupported media type",
            "Envie o corpo como JSON em UTF-8, com Content-Type: application/json.",
        )


async def receive_signed(scope: Scope, receive: Receive, verifier: WebhookVerifier, max_body_bytes: int) -> SignedDelivery:
    """Run the size, content type and signature checks; return the delivery with its raw body."""
    headers = header_values(scope)
    body = await read_body(headers, receive, max_body_bytes)
    check_json_content_type(headers.get("content-type", ""))
    verified = verifier.verify(headers, body)
    return SignedDelivery(verifier.partner, scope["path"], verified.webhook_id, verified.signed_at, body)


def parse_body(delivery: SignedDelivery, model: type[ModelT]) -> ModelT:
    """Decode the body as UTF-8 and JSON and validate it against `model`."""
    try:
        text = delivery.body.decode("utf-8")
    except UnicodeDecodeError:
        logger.warning("webhook rejected partner=%s webhook_id=%s reason=invalid_utf8", delivery.partner, delivery.webhook_id)
        raise ProblemError(
            400, "invalid_encoding", "Body is not UTF-8", "O corpo da requisição não é texto UTF-8 válido."
        ) from None

    try:
        parsed = model.model_validate_json(text)
    except ValidationError as error:
        problem = _problem_for(error)
        logger.warning(
            "webhook rejected partner=%s webhook_id=%s reason=%s fields=%s",
            delivery.partner,
            delivery.webhook_id,
            problem.code,
            [item.pointer for item in problem.errors or ()],
        )
        raise problem from None

    # JSON can carry U+0000 only as the escape \u0000. PostgreSQL text and jsonb cannot store it, and
    # one such value would fail the whole NIX batch it is written in.
    if "\\u0000" in text:
        pointers = _nul_pointers(parsed.model_dump(by_alias=True), "#")
        if pointers:
            logger.warning(
                "webhook rejected partner=%s webhook_id=%s reason=nul_character fields=%s",
                delivery.partner, delivery.webhook_id, pointers,
            )
            raise invalid_fields([
                FieldError(pointer=pointer, code="nul_character", detail="O texto contém o caractere nulo (U+0000).")
                for pointer in pointers
            ])
    return parsed


def _nul_pointers(value: Any, pointer: str) -> list[str]:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, str):
        return [pointer] if "\x00" in value else []
    if isinstance(value, dict):
        return [found for key, item in value.items() for found in _nul_pointers(item, f"{pointer}/{key}")]
    if isinstance(value, list):
        return [found for index, item in enumerate(value) for found in _nul_pointers(item, f"{pointer}/{index}")]
    return []


def _problem_for(error: ValidationError) -> ProblemError:
    # include_input=False because the input may be personal data, which must not reach logs or responses.
    errors = error.errors(include_input=False, include_url=False)
    if any(item["type"] == "json_invalid" for item in errors):
        return ProblemError(400, "malformed_json", "Malformed JSON", "O corpo da requisição não é um JSON válido.")
    return invalid_fields(field_errors(errors))
