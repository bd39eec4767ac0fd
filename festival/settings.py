"""Platform settings, read once from `FESTIVAL_*` environment variables.

An invalid value fails at start with the variable's name, through `load_settings`.
"""

from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

SpaceSeparated = Annotated[list[SecretStr], NoDecode]


class SettingsError(Exception):
    """A `FESTIVAL_*` variable is missing or invalid."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FESTIVAL_", extra="ignore")

    database_url: str | None = None
    mqtt_url: str | None = None
    mqtt_version: Literal["5", "3.1.1"] = "5"
    # Mosquitto supports `$share/...` on both protocol versions; the fallback broker does not.
    mqtt_shared_subscriptions: bool = True
    # Listeners of the broker that `festival up` starts when FESTIVAL_MQTT_URL is unset.
    mqtt_port: int = Field(default=1883, ge=1, le=65535)
    mqtt_ws_port: int = Field(default=9001, ge=1, le=65535)
    # Which broker `festival up` starts: `auto` prefers Mosquitto and falls back to the embedded
    # pure-Python broker (amqtt, MQTT 3.1.1 only) where no mosquitto binary is installed.
    local_broker: Literal["auto", "mosquitto", "amqtt"] = "auto"
    # WebSocket URL with the read-only `screen` credentials that live pages connect with,
    # such as ws://screen:password@127.0.0.1:9001; `festival up` sets it for its own broker.
    mqtt_ws_url: SecretStr | None = None
    topic_root: str = Field(default="festival/v1", pattern=r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=1, le=65535)
    data_dir: Path = Path(".festival")

    nix_webhook_secrets: SpaceSeparated = []
    redetv_webhook_secrets: SpaceSeparated = []
    redetv_api_url: str | None = None
    redetv_api_token: SecretStr | None = None
    operator_tokens: SpaceSeparated = []
    mongodb_url: str | None = None

    webhook_tolerance_seconds: int = Field(default=300, ge=1)
    webhook_max_body_bytes: int = Field(default=256 * 1024, ge=1024)

    # An event that a consumer has not applied this long after publication is published again.
    redelivery_after_seconds: float = Field(default=30.0, gt=0)
    redelivery_max_attempts: int = Field(default=5, ge=1)
    relay_poll_seconds: float = Field(default=1.0, gt=0)
    relay_batch_size: int = Field(default=500, ge=1)

    lucky_number_price: Decimal = Field(default=Decimal("10.00"), gt=0)
    draw_series: int = Field(default=1, ge=1, le=1000)

    # Prometheus text format of the relay, scheduler and consumers on this port (unset: not served);
    # the gateway serves it on /metrics. Telemetry itself is configured by the OTEL_* variables.
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    # Address of the Jaeger UI that the operator dashboard links to (unset: no link).
    jaeger_ui_url: str | None = None

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        # asyncpg rejects other schemes only on connect, with a traceback; this names the variable at start.
        if value and urlsplit(value).scheme not in ("postgresql", "postgres"):
            raise ValueError("must be a postgresql:// URL, such as postgresql://user:password@127.0.0.1:5432/festival")
        return value

    @field_validator("mqtt_url")
    @classmethod
    def _check_mqtt_port(cls, value: str | None) -> str | None:
        if value:
            try:
                urlsplit(value).port
            except ValueError as error:
                raise ValueError(f"invalid port ({error}); use mqtt://user:password@host:1883") from None
        return value

    @field_validator("jaeger_ui_url")
    @classmethod
    def _check_jaeger_ui_url(cls, value: str | None) -> str | None:
        # The dashboard puts it in a link, where any other scheme (javascript:, data:) could run code.
        if not value:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL, such as http://127.0.0.1:16686")
        return value

    @field_validator("nix_webhook_secrets", "redetv_webhook_secrets", "operator_tokens", mode="before")
    @classmethod
    def _split_spaces(cls, value: object) -> object:
        if isinstance(value, str):
            return value.split()
        return value

    def require_database_url(self) -> str:
        if not self.database_url:
            raise SettingsError("FESTIVAL_DATABASE_URL is not set: point it at PostgreSQL or run `festival up`")
        return self.database_url

    def require_mqtt_url(self) -> str:
        if not self.mqtt_url:
            raise SettingsError("FESTIVAL_MQTT_URL is not set: point it at the broker or run `festival up`")
        return self.mqtt_url


def load_settings() -> Settings:
    """Read the settings, naming the variable of every invalid value."""
    try:
        return Settings()
    except ValidationError as error:
        problems = "; ".join(
            f"FESTIVAL_{'_'.join(str(part) for part in item['loc']).upper()}: {item['msg']}"
            for item in error.errors()
        )
        raise SettingsError(f"invalid settings: {problems}") from error


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
