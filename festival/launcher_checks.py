"""Checks that `festival up` runs before it starts anything; each error message names what to change."""

import errno
import fcntl
import os
import socket
from pathlib import Path
from typing import TextIO

from festival.services import free_port
from festival.settings import Settings

WILDCARD_HOSTS = ("", "0.0.0.0", "::")
LOCK_FILE = "festival-up.lock"
DEFAULT_MQTT_PORT = Settings.model_fields["mqtt_port"].default


class LaunchError(Exception):
    """`festival up` cannot start. The message gives the reason and what to do."""


def port_in_use(host: str, port: int) -> bool:
    """Return True when a socket already listens on `host:port`.

    The probe binds with SO_REUSEADDR, as servers do, so connections of an earlier run that are
    still in TIME_WAIT do not count as a listener.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def local_http_url(settings: Settings) -> str:
    """Return the gateway's base URL as a client on this machine reaches it."""
    host = "127.0.0.1" if settings.http_host in WILDCARD_HOSTS else settings.http_host
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.http_port}"


def _suggest_port(host: str, in_use: int) -> int:
    """Return the next free port above `in_use`, or any free port."""
    for candidate in range(in_use + 1, min(in_use + 20, 65536)):
        if not port_in_use(host, candidate):
            return candidate
    return free_port(host)


def lock_data_dir(data_dir: Path) -> TextIO:
    """Take the data folder for this `festival up`, or raise LaunchError when another one has locked it.

    Two launchers on one folder would share one PostgreSQL and one broker persistence file, and
    the first to stop would stop the database under the other. The lock is released when the
    returned file is closed or the process ends.
    """
    lock = (data_dir / LOCK_FILE).open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "unknown"
        lock.close()
        raise LaunchError(
            f"the data folder {data_dir} is in use by another `festival up` (pid {holder}).\n"
            "  Stop that one first (Ctrl-C in its terminal), or give this one its own folder:\n"
            f"  FESTIVAL_DATA_DIR={data_dir}-2 ./dev up"
        ) from None

    lock.seek(0)
    lock.truncate()
    lock.write(str(os.getpid()))
    lock.flush()
    return lock


def check_ports(settings: Settings, command: str = "./dev up") -> None:
    """Raise LaunchError, naming the port and the variables to change, when a port that `festival up` needs is taken.

    `command` is the command the suggestions repeat, such as `./dev up --demo`.
    """
    http_host = "0.0.0.0" if settings.http_host in WILDCARD_HOSTS else settings.http_host
    if port_in_use(http_host, settings.http_port):
        suggestion = _suggest_port(http_host, settings.http_port)
        raise LaunchError(
            f"port {settings.http_port} on {settings.http_host} is already in use, "
            "so the gateway cannot listen on it.\n"
            f"  Choose another port: FESTIVAL_HTTP_PORT={suggestion} {command}\n"
            f"  Or stop the program that listens on port {settings.http_port}."
        )

    if settings.mqtt_url:
        return
    if settings.mqtt_port == settings.mqtt_ws_port:
        raise LaunchError(
            f"FESTIVAL_MQTT_PORT and FESTIVAL_MQTT_WS_PORT are both {settings.mqtt_port}: give them different values"
        )
    if port_in_use("127.0.0.1", settings.mqtt_port):
        raise LaunchError(_mqtt_port_taken(settings.mqtt_port, command))
    if port_in_use("127.0.0.1", settings.mqtt_ws_port):
        raise LaunchError(_ws_port_taken(settings.mqtt_ws_port, command))


def _mqtt_port_taken(port: int, command: str) -> str:
    """Return the advice for a taken MQTT port: another port, or the broker that may already listen there."""
    reason = ""
    if port == DEFAULT_MQTT_PORT:
        reason = f" (on Debian, the system service of the mosquitto package listens on {DEFAULT_MQTT_PORT})"
    return (
        f"port {port} on 127.0.0.1 is already in use, so the local broker cannot open its MQTT listener "
        f"there{reason}.\n"
        f"  Choose another port: FESTIVAL_MQTT_PORT={_suggest_port('127.0.0.1', port)} {command}\n"
        "  Or, if an MQTT broker listens there, use it: "
        f"FESTIVAL_MQTT_URL=mqtt://USER:PASSWORD@127.0.0.1:{port} {command}"
    )


def _ws_port_taken(port: int, command: str) -> str:
    """Return the advice for a taken WebSocket port, which only the local broker's screen listener uses."""
    return (
        f"port {port} on 127.0.0.1 is already in use, so the local broker cannot open its MQTT over WebSockets "
        "listener there (the live screens connect to it).\n"
        f"  Choose another port: FESTIVAL_MQTT_WS_PORT={_suggest_port('127.0.0.1', port)} {command}\n"
        f"  Or stop the program that listens on port {port}."
    )
