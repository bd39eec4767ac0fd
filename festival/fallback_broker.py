"""Embedded pure-Python MQTT broker (amqtt) that `festival up` runs where Mosquitto is not installed.

amqtt 0.12 speaks MQTT 3.1.1 only and delivers nothing to `$share/...` filters, so the components
that use it must run with FESTIVAL_MQTT_VERSION=3.1.1 and FESTIVAL_MQTT_SHARED_SUBSCRIPTIONS=false.
It keeps sessions and retained messages in memory only: a restart of the broker loses them.
The broker runs in its own child process (`python -m festival.fallback_broker CONFIG`), so a busy
broker does not slow the launcher and the launcher can stop it like any other process.
"""

import asyncio
import json
import logging
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from festival.services import (
    MosquittoCredentials,
    ServiceError,
    parent_death_signal,
    port_is_open,
    stop_process,
    wait_for_port,
)

logger = logging.getLogger(__name__)

SHARED_SUBSCRIPTIONS = False
MQTT_VERSION = "3.1.1"


def broker_config(
    folder: Path, *, port: int, ws_port: int, bind_address: str, credentials: MosquittoCredentials, topic_root: str
) -> dict[str, Any]:
    """Return the amqtt configuration with the same users and access rules as broker/mosquitto.acl."""
    from pwdlib import PasswordHash
    from pwdlib.hashers.argon2 import Argon2Hasher

    hasher = PasswordHash((Argon2Hasher(),))
    password_file = folder / "passwords"
    password_file.write_text(
        f"{credentials.service_user}:{hasher.hash(credentials.service_password)}\n"
        f"{credentials.screen_user}:{hasher.hash(credentials.screen_password)}\n"
    )
    password_file.chmod(0o600)

    screen_topics = [f"{topic_root}/draws/current", f"{topic_root}/draws/+/live", f"{topic_root}/draws/+/state"]
    return {
        "listeners": {
            "default": {"type": "tcp", "bind": f"{bind_address}:{port}"},
            "websockets": {"type": "ws", "bind": f"{bind_address}:{ws_port}"},
        },
        "plugins": {
            "amqtt.plugins.authentication.FileAuthPlugin": {"password_file": str(password_file)},
            # amqtt 0.12 reads subscribe rules from `acl`; its Config class has no `subscribe_acl` field.
            "amqtt.plugins.topic_checking.TopicAccessControlListPlugin": {
                "acl": {credentials.service_user: ["#"], credentials.screen_user: screen_topics},
                "publish_acl": {credentials.service_user: ["#"], credentials.screen_user: []},
            },
        },
    }


class AmqttBroker:
    """The fallback broker's child process, with the same interface as `festival.services.Mosquitto`."""

    def __init__(
        self,
        folder: Path,
        *,
        port: int,
        ws_port: int,
        credentials: MosquittoCredentials,
        topic_root: str = "festival/v1",
        bind_address: str = "127.0.0.1",
    ) -> None:
        self.folder = folder.resolve()
        self.port = port
        self.ws_port = ws_port
        self.credentials = credentials
        self.topic_root = topic_root
        self.bind_address = bind_address
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def service_url(self) -> str:
        c = self.credentials
        return f"mqtt://{c.service_user}:{c.service_password}@{self.bind_address}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> None:
        for port in (self.port, self.ws_port):
            if port_is_open(self.bind_address, port):
                raise ServiceError(f"port {port} on {self.bind_address} is taken")

        self.folder.mkdir(parents=True, exist_ok=True)
        config = broker_config(
            self.folder,
            port=self.port,
            ws_port=self.ws_port,
            bind_address=self.bind_address,
            credentials=self.credentials,
            topic_root=self.topic_root,
        )
        config_file = self.folder / "amqtt.json"
        config_file.write_text(json.dumps(config, indent=2))

        log = (self.folder / "amqtt.log").open("ab")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "festival.fallback_broker", str(config_file)],
            stdout=log,
            stderr=log,
            # Like the components: no Ctrl-C from the terminal, SIGTERM when the launcher dies.
            start_new_session=True,
            preexec_fn=parent_death_signal,
        )
        try:
            wait_for_port(self.bind_address, self.port, timeout=20.0)
            wait_for_port(self.bind_address, self.ws_port, timeout=20.0)
        except ServiceError:
            self.stop()
            raise
        logger.info("amqtt broker started pid=%s port=%s ws_port=%s", self._process.pid, self.port, self.ws_port)

    def stop(self) -> None:
        process, self._process = self._process, None
        stop_process(process, "amqtt broker")


async def serve(config: dict[str, Any]) -> None:
    """Run the broker until SIGTERM or SIGINT, then shut it down."""
    from amqtt.broker import Broker

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    broker = Broker(config)
    await broker.start()
    logger.info("amqtt broker listening listeners=%s", sorted(config["listeners"]))
    try:
        await stop.wait()
    finally:
        await broker.shutdown()
        logger.info("amqtt broker shut down")


def main() -> None:
    import warnings

    from festival.logs import configure_logging

    configure_logging("INFO", "text", "amqtt-broker")
    # The `acl` option works but amqtt 0.12 warns that it is deprecated in favour of a field it lacks.
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="amqtt")
    config = json.loads(Path(sys.argv[1]).read_text())
    asyncio.run(serve(config))


if __name__ == "__main__":
    main()
