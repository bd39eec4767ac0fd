"""Standard Webhooks signature verification over the raw request body.

A signature is `v1,` followed by the base64 HMAC-SHA256 of `{webhook-id}.{webhook-timestamp}.{body}`
under a secret written `whsec_<base64 key>`. A partner may hold several active secrets while it
rotates them and may send several signatures; one match is enough.

The `standardwebhooks` package signs and verifies with one secret and a fixed 5-minute window,
so this module implements the same scheme for several secrets and a configurable window. The
tests sign with that package to show that both agree.
"""

import base64
import binascii
import hashlib
import hmac
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import SecretStr

from gateway.problems import ProblemError

logger = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"
MAX_WEBHOOK_ID_LENGTH = 256
# A few signatures appear during a rotation; more than this is not a real sender.
MAX_SIGNATURES = 8


class WebhookSecretError(ValueError):
    """A configured secret is not `whsec_` followed by non-empty base64."""


@dataclass(frozen=True)
class VerifiedHeaders:
    webhook_id: str
    signed_at: datetime


def decode_secret(secret: str) -> bytes:
    """Return the HMAC key of a `whsec_<base64>` secret."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        # Like the reference implementation, accept base64 written without its padding.
        key = base64.b64decode(encoded + "==", validate=False)
    except binascii.Error as error:
        raise WebhookSecretError("webhook secret is not valid base64 after the whsec_ prefix") from error
    if not key:
        raise WebhookSecretError("webhook secret is empty")
    return key


def _unauthorized(code: str, title: str, detail: str) -> ProblemError:
    return ProblemError(401, code, title, detail)


class WebhookVerifier:
    """Verify signed deliveries of one partner under any of its active secrets."""

    def __init__(self, partner: str, secrets: Iterable[SecretStr | str], tolerance_seconds: int) -> None:
        self.partner = partner
        self.tolerance_seconds = tolerance_seconds
        self._keys = tuple(
            decode_secret(secret.get_secret_value() if isinstance(secret, SecretStr) else secret)
            for secret in secrets
        )
        if not self._keys:
            logger.warning("no webhook secret configured partner=%s: every delivery will be rejected", partner)

    def __repr__(self) -> str:
        return f"WebhookVerifier(partner={self.partner!r}, secrets={len(self._keys)})"

    def verify(self, headers: Mapping[str, str], body: bytes, *, now: float | None = None) -> VerifiedHeaders:
        """Check the Standard Webhooks headers of `body`; raise a 401 `ProblemError` if they fail."""
        webhook_id = headers.get("webhook-id", "")
        timestamp_text = headers.get("webhook-timestamp", "")
        signature_header = headers.get("webhook-signature", "")
        if not (webhook_id and timestamp_text and signature_header):
            raise _unauthorized(
                "signature_missing",
                "Missing signature headers",
                "Faltam os cabeçalhos webhook-id, webhook-timestamp ou webhook-signature.",
            )
        if len(webhook_id) > MAX_WEBHOOK_ID_LENGTH:
            raise _unauthorized(
                "invalid_signature_headers",
                "Invalid signature headers",
                f"O cabeçalho webhook-id passa de {MAX_WEBHOOK_ID_LENGTH} caracteres.",
            )

        timestamp = self._check_timestamp(timestamp_text, time.time() if now is None else now)

        signed_content = f"{webhook_id}.{timestamp_text}.".encode() + body
        if not self._matches(signed_content, signature_header):
            logger.warning("webhook signature rejected partner=%s webhook_id=%s", self.partner, webhook_id)
            raise _unauthorized(
                "invalid_signature",
                "Invalid signature",
                "Nenhuma assinatura do webhook confere com os segredos ativos deste parceiro.",
            )
        return VerifiedHeaders(webhook_id, datetime.fromtimestamp(timestamp, UTC))

    def _check_timestamp(self, text: str, now: float) -> int:
        if not text.isascii() or not text.isdigit() or len(text) > 12:
            raise _unauthorized(
                "invalid_signature_headers",
                "Invalid signature headers",
                "O cabeçalho webhook-timestamp deve ser um inteiro em segundos Unix.",
            )

        timestamp = int(text)
        if abs(now - timestamp) > self.tolerance_seconds:
            logger.warning("webhook timestamp outside window partner=%s skew_seconds=%d", self.partner, int(now - timestamp))
            raise _unauthorized(
                "timestamp_out_of_window",
                "Timestamp outside the accepted window",
                f"O webhook-timestamp difere do relógio do servidor em mais de {self.tolerance_seconds} segundos.",
            )
        return timestamp

    def _matches(self, signed_content: bytes, signature_header: str) -> bool:
        offered = [
            value.removeprefix("v1,").encode()
            for value in signature_header.split(" ")[:MAX_SIGNATURES]
            if value.startswith("v1,")
        ]
        matched = False
        # Every pair is compared, so the time taken does not tell which secret or signature matched.
        for key in self._keys:
            expected = base64.b64encode(hmac.new(key, signed_content, hashlib.sha256).digest())
            for signature in offered:
                matched |= hmac.compare_digest(expected, signature)
        return matched
