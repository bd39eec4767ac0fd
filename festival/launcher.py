"""`festival up`: the whole platform on one machine, with its own database and broker where none is set.

Start order: port checks, credentials, PostgreSQL and migrations, the broker, the components as child
processes. Stop order is the reverse, on Ctrl-C, SIGTERM or a failure during start.
"""

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import asyncpg
import httpx

from festival import fallback_broker
from festival.db import migrate
from festival.launcher_checks import LaunchError, check_ports, local_http_url, lock_data_dir
from festival.secrets_store import SecretsStore
from festival.services import (
    EmbeddedPostgres,
    Mosquitto,
    MosquittoCredentials,
    ServiceError,
    free_port,
    mosquitto_binary,
)
from festival.settings import Settings
from festival.supervisor import Component, Supervisor

logger = logging.getLogger(__name__)

DATABASE_NAME = "festival"
DEMO_RATE = 2.0

COMPONENTS = (
    Component("gateway", ("gateway",), "gateway.server"),
    Component("relay", ("relay",), "producers.relay"),
    Component("consumer-payments", ("consumer", "payments"), "consumers.runner"),
    Component("consumer-subscriptions", ("consumer", "subscriptions"), "consumers.runner"),
    Component("consumer-draws", ("consumer", "draws"), "consumers.runner"),
    Component("scheduler", ("scheduler",), "producers.scheduler"),
)

T = TypeVar("T")


@dataclass
class Platform:
    """Resolved state of `festival up`: the environment of its children and the facts of its banner."""

    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    generated: dict[str, str] = field(default_factory=dict)
    database: str = ""
    broker: str = ""
    ws_url: str | None = None
    fake_redetv_api: str | None = None


async def run_platform(settings: Settings, demo: bool) -> int:
    """Run the platform until cancelled; return 1, with the reason on stderr, when it cannot start."""
    try:
        async with contextlib.AsyncExitStack() as stack:
            try:
                await _start(settings, demo, stack)
                await asyncio.Event().wait()
            finally:
                _ignore_repeated_stop_signals()
    except LaunchError as error:
        print(f"festival up: {error}", file=sys.stderr, flush=True)
        return 1
    except ServiceError as error:
        print(f"festival up: {error}", file=sys.stderr, flush=True)
        return 1
    return 0


async def _start(settings: Settings, demo: bool, stack: contextlib.AsyncExitStack) -> None:
    platform = Platform(data_dir=settings.data_dir.resolve())
    platform.data_dir.mkdir(parents=True, exist_ok=True)
    stack.callback(lock_data_dir(platform.data_dir).close)
    check_ports(settings, "./dev up --demo" if demo else "./dev up")
    store = SecretsStore.open(platform.data_dir)
    _resolve_credentials(settings, store, platform)

    database_url = await _start_database(settings, platform, stack)
    applied = await migrate(database_url)
    logger.info("migrations applied count=%s versions=%s", len(applied), ",".join(applied) or "none")
    platform.env["FESTIVAL_DATABASE_URL"] = database_url

    await _start_broker(settings, store, platform, stack)
    components = list(COMPONENTS)
    if demo:
        # The scheduler's draws-demo job keeps one draw a few minutes ahead, so the live page shows a draw soon.
        platform.env["FESTIVAL_DEMO_DRAWS"] = "1"
        components += _fake_partner_api(settings, store, platform)

    components = _with_metrics_ports(settings, components)
    supervisor = Supervisor(_child_environment(platform))
    stack.push_async_callback(supervisor.stop)
    started = [component.name for component in components if supervisor.start(component)]

    _print_banner(settings, platform, started, demo)
    await _wait_for_gateway(settings, "gateway" in started)

    # The simulator starts once the gateway responds, so that its first webhooks are not lost.
    if demo:
        arguments = ("simulate", "--url", local_http_url(settings), "--rate", str(DEMO_RATE))
        supervisor.start(Component("simulator", arguments, "producers.simulator"))


def _with_metrics_ports(settings: Settings, components: list[Component]) -> list[Component]:
    """Give each child but the gateway its own metrics port, counting up from FESTIVAL_METRICS_PORT.

    One shared value would make every child after the first fail to bind it. The gateway serves
    its metrics at /metrics on the HTTP port instead.
    """
    if settings.metrics_port is None:
        return components

    assigned: list[Component] = []
    port = settings.metrics_port
    for component in components:
        if component.name == "gateway":
            assigned.append(component)
            continue
        assigned.append(replace(component, env=(*component.env, ("FESTIVAL_METRICS_PORT", str(port)))))
        logger.info("metrics port assigned component=%s port=%d", component.name, port)
        port += 1
    return assigned


def _fake_partner_api(settings: Settings, store: SecretsStore, platform: Platform) -> list[Component]:
    """Return the FAKE REDETV!PLUS entitlements API component, unless a real API is configured.

    The demo has no partner to push entitlements to; the fake receives them on 127.0.0.1, so the
    subscriptions consumer's pushes can be followed in its log.
    """
    if settings.redetv_api_url:
        return []
    port = free_port()
    platform.env["FESTIVAL_REDETV_API_URL"] = f"http://127.0.0.1:{port}"
    platform.env["FESTIVAL_REDETV_API_TOKEN"] = store.get_or_create("fake_redetv_api_token")
    platform.fake_redetv_api = platform.env["FESTIVAL_REDETV_API_URL"]
    return [Component("fake-redetv-api", ("fake-redetv-api", "--port", str(port)), "producers.fake_redetv_api")]


def _resolve_credentials(settings: Settings, store: SecretsStore, platform: Platform) -> None:
    """Fill every unset webhook secret and operator token from the store, generating what is missing."""
    credential_settings = (
        ("FESTIVAL_NIX_WEBHOOK_SECRETS", settings.nix_webhook_secrets, "nix_webhook_secret"),
        ("FESTIVAL_REDETV_WEBHOOK_SECRETS", settings.redetv_webhook_secrets, "redetv_webhook_secret"),
        ("FESTIVAL_OPERATOR_TOKENS", settings.operator_tokens, "operator_token"),
    )
    for variable, configured, stored_name in credential_settings:
        if configured:
            continue
        value = store.get_or_create(stored_name)
        platform.env[variable] = value
        platform.generated[variable] = value


async def _start_database(settings: Settings, platform: Platform, stack: contextlib.AsyncExitStack) -> str:
    if settings.database_url:
        platform.database = "PostgreSQL at FESTIVAL_DATABASE_URL"
        return settings.database_url

    server = EmbeddedPostgres(platform.data_dir / "pgdata")
    # Registered before the start so that a stop request during the start still stops the server.
    stack.callback(server.stop)
    admin_url = await _run_blocking(server.start)
    logger.info("embedded postgresql ready pid=%s pgdata=%s", server.pid, server.pgdata)

    url = _with_database(admin_url, DATABASE_NAME)
    connection = await asyncpg.connect(admin_url)
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE_NAME)
        if not exists:
            await connection.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
            logger.info("database created name=%s", DATABASE_NAME)
    finally:
        await connection.close()

    platform.database = f"embedded PostgreSQL, database {DATABASE_NAME!r}, data in {server.pgdata}"
    return url


async def _start_broker(
    settings: Settings, store: SecretsStore, platform: Platform, stack: contextlib.AsyncExitStack
) -> None:
    if settings.mqtt_url:
        platform.broker = "MQTT broker at FESTIVAL_MQTT_URL"
        platform.ws_url = settings.mqtt_ws_url.get_secret_value() if settings.mqtt_ws_url else None
        return

    credentials = MosquittoCredentials(
        service_password=store.get_or_create("mqtt_service_password"),
        screen_password=store.get_or_create("mqtt_screen_password"),
    )
    options = {
        "port": settings.mqtt_port,
        "ws_port": settings.mqtt_ws_port,
        "credentials": credentials,
        "topic_root": settings.topic_root,
    }
    use_mosquitto = _choose_mosquitto(settings)
    if use_mosquitto:
        broker: Mosquitto | fallback_broker.AmqttBroker = Mosquitto(
            platform.data_dir / "mosquitto", own_session=True, **options  # type: ignore[arg-type]
        )
        platform.broker = f"Mosquitto on 127.0.0.1:{settings.mqtt_port}"
    else:
        broker = fallback_broker.AmqttBroker(platform.data_dir / "amqtt", **options)  # type: ignore[arg-type]
        platform.broker = (
            f"embedded amqtt broker on 127.0.0.1:{settings.mqtt_port} (no mosquitto binary found: "
            "MQTT 3.1.1 only, no shared subscriptions, messages kept in memory only; "
            "install Debian's mosquitto package for the real broker)"
        )
        platform.env["FESTIVAL_MQTT_VERSION"] = fallback_broker.MQTT_VERSION
        platform.env["FESTIVAL_MQTT_SHARED_SUBSCRIPTIONS"] = "true" if fallback_broker.SHARED_SUBSCRIPTIONS else "false"

    stack.callback(broker.stop)
    await _run_blocking(broker.start)
    kind = "mosquitto" if use_mosquitto else "amqtt"
    logger.info("broker ready kind=%s pid=%s port=%s", kind, broker.pid, broker.port)

    platform.env["FESTIVAL_MQTT_URL"] = broker.service_url
    platform.generated["FESTIVAL_MQTT_URL"] = broker.service_url
    platform.ws_url = f"ws://{credentials.screen_user}:{credentials.screen_password}@127.0.0.1:{settings.mqtt_ws_port}"
    platform.env["FESTIVAL_MQTT_WS_URL"] = platform.ws_url


def _choose_mosquitto(settings: Settings) -> bool:
    """Return True to run Mosquitto, False for the embedded amqtt broker."""
    installed = mosquitto_binary() is not None and shutil.which("mosquitto_passwd") is not None
    if settings.local_broker == "mosquitto" and not installed:
        raise LaunchError(
            "FESTIVAL_LOCAL_BROKER=mosquitto, but mosquitto or mosquitto_passwd is not installed: "
            "install Debian's mosquitto package, or unset FESTIVAL_LOCAL_BROKER to use the embedded broker"
        )
    if settings.local_broker == "amqtt":
        return False
    return installed


def _child_environment(platform: Platform) -> dict[str, str]:
    env = dict(os.environ)
    env.update(platform.env)
    env["FESTIVAL_DATA_DIR"] = str(platform.data_dir)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _with_database(url: str, database: str) -> str:
    return urlsplit(url)._replace(path=f"/{database}").geturl()


async def _run_blocking(function: Callable[[], T]) -> T:
    """Run a blocking start in a thread; on cancellation, let it finish so that its stop can undo it."""
    task = asyncio.ensure_future(asyncio.to_thread(function))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await task
        raise


def _ignore_repeated_stop_signals() -> None:
    """Keep a second Ctrl-C from interrupting the stop that the first one started."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, logger.warning, "stop already in progress signal=%s", signum.name)


def _print_banner(settings: Settings, platform: Platform, started: list[str], demo: bool) -> None:
    base = local_http_url(settings)
    lines = [
        "",
        "Festival de Prêmios is running. Press Ctrl-C to stop.",
        f"  API docs      {base}/docs",
        f"  Live screen   {base}/ao-vivo",
        f"  Dashboard     {base}/painel",
        f"  Draws API     {base}/v1/draws",
        f"  Broker        {platform.broker}",
    ]
    if platform.ws_url:
        lines.append(f"  Screens (WS)  {platform.ws_url}")
    lines += [
        f"  Database      {platform.database}",
        f"  Components    {', '.join(started) or 'none available yet'}",
    ]
    if demo:
        lines.append(
            f"  Demo traffic  {DEMO_RATE:g} signed webhooks per second from NIX (payments) and "
            "REDETV!PLUS (subscriptions) once the gateway is ready"
        )
    if platform.fake_redetv_api:
        lines.append(f"  Entitlements  FAKE REDETV!PLUS API at {platform.fake_redetv_api} (demo only)")
    if platform.generated:
        lines += ["", f"Generated credentials (kept in {platform.data_dir / 'secrets.json'}):"]
        lines += [f"  {variable}={value}" for variable, value in platform.generated.items()]
    print("\n".join(lines) + "\n", flush=True)


async def _wait_for_gateway(settings: Settings, gateway_started: bool, timeout: float = 60.0) -> None:
    """Log when the gateway responds on `/healthz`, or a warning when it does not within `timeout` seconds."""
    if not gateway_started:
        return

    url = f"{local_http_url(settings)}/healthz"
    async with httpx.AsyncClient(timeout=2.0) as client:
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url)).status_code == 200:
                    logger.info("gateway ready url=%s", url)
                    return
            await asyncio.sleep(0.5)
    logger.warning("gateway not ready url=%s after=%.0fs", url, timeout)
