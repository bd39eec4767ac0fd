"""MQTT connection factories for services, from `FESTIVAL_MQTT_URL` and `FESTIVAL_MQTT_VERSION`."""

import logging
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import aiomqtt
import zmqtt
from faststream.mqtt import MQTTBroker

from festival.settings import Settings, SettingsError


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    username: str | None
    password: str | None

    def __repr__(self) -> str:
        # The password stays out of logs and tracebacks.
        return f"BrokerAddress(host={self.host!r}, port={self.port}, username={self.username!r})"


def parse_mqtt_url(url: str) -> BrokerAddress:
    """Split `mqtt://user:pass@host:port` into its parts."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
        raise SettingsError(
            f"FESTIVAL_MQTT_URL must look like mqtt://user:password@host:1883, got scheme {parts.scheme!r}"
        )
    return BrokerAddress(
        host=parts.hostname,
        port=parts.port or 1883,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def aiomqtt_client(settings: Settings, *, identifier: str | None = None, **kwargs: object) -> aiomqtt.Client:
    """Return an aiomqtt client for the configured broker and protocol version."""
    address = parse_mqtt_url(settings.require_mqtt_url())
    protocol = aiomqtt.ProtocolVersion.V5 if settings.mqtt_version == "5" else aiomqtt.ProtocolVersion.V311
    return aiomqtt.Client(
        address.host,
        address.port,
        username=address.username,
        password=address.password,
        identifier=identifier,
        protocol=protocol,
        **kwargs,  # type: ignore[arg-type]
    )


def faststream_broker(settings: Settings, *, client_id: str = "", **kwargs: object) -> MQTTBroker:
    """Return a FastStream MQTT broker that keeps reconnecting for as long as the broker is down.

    zmqtt's default reconnect gives up after five attempts (about 31 s), and then the subscriber
    stops receiving without an error.
    """
    address = parse_mqtt_url(settings.require_mqtt_url())
    security = None
    if address.username:
        from faststream.security import SASLPlaintext

        security = SASLPlaintext(username=address.username, password=address.password or "")
    return MQTTBroker(
        f"mqtt://{address.host}:{address.port}",
        client_id=client_id,
        version="5.0" if settings.mqtt_version == "5" else "3.1.1",
        reconnect=zmqtt.ReconnectConfig(initial_delay=0.5, max_delay=5.0, max_attempts=None),
        security=security,
        # A plain logger that propagates to the root handler, so FastStream's lines get the
        # platform's format (text or JSON) instead of its own coloured stdout handler.
        logger=logging.getLogger("faststream.broker"),
        # FastStream logs every message received and processed at this level.
        log_level=logging.DEBUG,
        **kwargs,  # type: ignore[arg-type]
    )
