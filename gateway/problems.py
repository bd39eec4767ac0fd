"""Error responses as RFC 9457 problem details, and the handlers that turn every error into one.

`ProblemError` is the one exception that routes raise on purpose. Starlette's HTTP errors and
FastAPI's request validation errors are converted by handlers, and `UnhandledErrorMiddleware`
turns any other exception into a logged 500 problem.
"""

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from schemas.problems import PROBLEM_MEDIA_TYPE, PROBLEM_TYPE_PREFIX, FieldError, Problem

logger = logging.getLogger(__name__)


class ProblemError(Exception):
    """Error response: HTTP status, stable English code and title, Portuguese detail."""

    def __init__(
        self,
        status: int,
        code: str,
        title: str,
        detail: str,
        *,
        errors: Sequence[FieldError] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {title}")
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.errors = list(errors) if errors is not None else None
        self.headers = dict(headers or {})

    def to_problem(self, instance: str | None = None) -> Problem:
        return Problem(
            type=PROBLEM_TYPE_PREFIX + self.code,
            title=self.title,
            status=self.status,
            code=self.code,
            detail=self.detail,
            instance=instance,
            errors=self.errors,
        )


def problem_response(error: ProblemError, instance: str | None = None) -> Response:
    body = error.to_problem(instance).model_dump_json(exclude_none=True)
    return Response(body, status_code=error.status, media_type=PROBLEM_MEDIA_TYPE, headers=error.headers)


# Portuguese explanation of each validation error type; the value sent is never echoed.
_FIELD_DETAILS = {
    "missing": "Campo obrigatório ausente.",
    "invalid_amount": "Valor inválido: use texto com ponto e exatamente duas casas decimais, como \"29.90\".",
    "amount_not_positive": "O valor deve ser maior que zero.",
    "invalid_datetime": "Data e hora inválidas: use RFC 3339 com fuso horário, como \"2025-03-01T12:00:00-03:00\".",
    "timezone_aware": "Data e hora sem fuso horário: informe o deslocamento, como -03:00 ou Z.",
    "datetime_parsing": "Data e hora inválidas: use RFC 3339 com fuso horário.",
    "datetime_from_date_parsing": "Data e hora inválidas: use RFC 3339 com fuso horário.",
    "literal_error": "Valor não permitido para este campo.",
    "string_type": "Este campo deve ser um texto.",
    "string_too_short": "Texto vazio ou curto demais.",
    "string_too_long": "Texto longo demais.",
    "string_pattern_mismatch": "Formato inválido para este campo.",
    "int_parsing": "Este campo deve ser um número inteiro.",
    "int_type": "Este campo deve ser um número inteiro.",
    "greater_than_equal": "Valor abaixo do mínimo permitido.",
    "less_than_equal": "Valor acima do máximo permitido.",
    "list_type": "Este campo deve ser uma lista.",
    "too_short": "A lista tem itens de menos.",
    "too_long": "A lista tem itens demais.",
    "model_type": "Este campo deve ser um objeto JSON.",
    "model_attributes_type": "Este campo deve ser um objeto JSON.",
    "dict_type": "Este campo deve ser um objeto JSON.",
    "paid_at_missing": "Um evento charge.paid exige o campo data.paid_at.",
    "refund_missing": "Um evento charge.refunded exige o campo data.refund.",
    "uuid_parsing": "Identificador inválido: use um UUID.",
}
_DEFAULT_FIELD_DETAIL = "Valor inválido para este campo."


def _pointer(location: Iterable[str | int]) -> str:
    # The whole document is "#" and each step adds "/name", escaped as RFC 6901 requires.
    return "#" + "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in location)


def field_errors(errors: Iterable[Mapping[str, Any]], *, skip_prefix: int = 0) -> list[FieldError]:
    """Convert pydantic error dicts into field errors, dropping the inputs they carry."""
    return [
        FieldError(
            pointer=_pointer(error["loc"][skip_prefix:]),
            code=error["type"],
            detail=_FIELD_DETAILS.get(error["type"], _DEFAULT_FIELD_DETAIL),
        )
        for error in errors
    ]


def invalid_fields(errors: list[FieldError]) -> ProblemError:
    return ProblemError(
        422,
        "validation_failed",
        "Validation failed",
        "Um ou mais campos estão ausentes ou inválidos; veja a lista em errors.",
        errors=errors,
    )


_HTTP_PROBLEMS = {
    404: ("not_found", "Not found", "O recurso pedido não existe."),
    405: ("method_not_allowed", "Method not allowed", "Este método HTTP não é aceito neste endereço."),
}


async def _on_http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    code, title, detail = _HTTP_PROBLEMS.get(
        error.status_code, ("http_error", "HTTP error", "A requisição não pôde ser atendida.")
    )
    headers = dict(error.headers or {})
    return problem_response(ProblemError(error.status_code, code, title, detail, headers=headers), request.url.path)


async def _on_request_validation_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    # FastAPI locations start with where the value came from (path, query, header, body).
    errors = field_errors(error.errors())
    logger.warning(
        "request rejected path=%s reason=validation fields=%s", request.url.path, [item.pointer for item in errors]
    )
    return problem_response(invalid_fields(errors), request.url.path)


async def _on_problem(request: Request, error: Exception) -> Response:
    assert isinstance(error, ProblemError)
    return problem_response(error, request.url.path)


class UnhandledErrorMiddleware:
    """Respond with a 500 problem in Portuguese to any exception a route lets escape, and log it.

    It runs inside Starlette's own error middleware, which would respond with plain text and re-raise.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_tracking)
        except Exception:
            logger.exception("request failed method=%s path=%s", scope.get("method"), scope.get("path"))
            if started:
                raise
            error = ProblemError(
                500,
                "internal_error",
                "Internal server error",
                "Erro interno ao processar a requisição. Tente novamente; se persistir, avise a operação.",
            )
            body = json.dumps(error.to_problem(scope.get("path")).model_dump(exclude_none=True)).encode()
            await send({
                "type": "http.response.start",
                "status": 500,
                "headers": [(b"content-type", PROBLEM_MEDIA_TYPE.encode()), (b"content-length", str(len(body)).encode())],
            })
            await send({"type": "http.response.body", "body": body})


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ProblemError, _on_problem)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(RequestValidationError, _on_request_validation_error)
    app.add_middleware(UnhandledErrorMiddleware)


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": Problem, "content": {PROBLEM_MEDIA_TYPE: {}}, "description": "problem details (RFC 9457)"},
    "5XX": {"model": Problem, "content": {PROBLEM_MEDIA_TYPE: {}}, "description": "problem details (RFC 9457)"},
}
