"""Operator authentication: a bearer token from `FESTIVAL_OPERATOR_TOKENS`."""

import hmac
import logging

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gateway.problems import ProblemError

logger = logging.getLogger(__name__)

_bearer = HTTPBearer(auto_error=False, description="operator token (FESTIVAL_OPERATOR_TOKENS)")


def _is_operator_token(offered: str, tokens: list[bytes]) -> bool:
    matched = False
    # Compare with every token, each in constant time, so the timing does not reveal which one matched.
    for token in tokens:
        matched |= hmac.compare_digest(offered.encode(), token)
    return matched


async def require_operator(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)
) -> None:
    """Reject the request with a 401 problem unless it carries a valid operator token."""
    tokens = [token.get_secret_value().encode() for token in request.app.state.settings.operator_tokens]
    if credentials is not None and _is_operator_token(credentials.credentials, tokens):
        return

    logger.warning("operator request rejected path=%s reason=%s", request.url.path, "missing token" if credentials is None else "invalid token")
    raise ProblemError(
        401,
        "unauthorized",
        "Operator token required",
        "Informe um token de operador válido no cabeçalho Authorization: Bearer.",
        headers={"WWW-Authenticate": "Bearer"},
    )
