"""The `festival` command: one entry point for the platform and each of its components."""

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import asyncpg

from festival.logs import configure_logging
from festival.settings import Settings, SettingsError, load_settings

logger = logging.getLogger("festival")

CONSUMERS = ("payments", "subscriptions", "draws")
# Commands that run a component and so set up OpenTelemetry from the OTEL_* variables.
TELEMETRY_COMMANDS = ("gateway", "relay", "scheduler", "consumer", "simulate")


def _run_until_signalled(main: Callable[[], Awaitable[Any]]) -> int:
    """Run `main` on uvloop, cancelling it on SIGINT or SIGTERM so that it shuts down cleanly."""
    import uvloop

    async def runner() -> Any:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, task.cancel)
        try:
            return await main()
        except asyncio.CancelledError:
            logger.info("stop requested")
            return 0

    result = uvloop.run(runner())
    return result if isinstance(result, int) else 0


def _component(name: str, settings: Settings) -> Callable[[], Awaitable[Any]]:
    if name == "gateway":
        from gateway.server import serve

        return lambda: serve(settings)
    if name == "relay":
        from producers.relay import run_relay

        return lambda: run_relay(settings)
    if name == "scheduler":
        from producers.scheduler import run_scheduler

        return lambda: run_scheduler(settings)
    raise AssertionError(name)


def _consumer(name: str, settings: Settings) -> Callable[[], Awaitable[Any]]:
    from consumers.runner import run_consumer

    return lambda: run_consumer(name, settings)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="festival", description="Festival de Prêmios event platform")
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="run the whole platform on this machine")
    up.add_argument("--demo", action="store_true", help="add simulated partner traffic and a draw every few minutes")

    commands.add_parser("gateway", help="run the HTTP gateway (webhooks, API, pages)")
    commands.add_parser("relay", help="run the outbox relay")
    commands.add_parser("scheduler", help="run the draw and expiry scheduler")
    consumer = commands.add_parser("consumer", help="run one consumer")
    consumer.add_argument("name", choices=CONSUMERS)
    commands.add_parser("migrate", help="apply the database migrations")

    simulate = commands.add_parser("simulate", help="send signed, simulated partner webhooks to a gateway")
    simulate.add_argument("--url", default=None, help="gateway base URL; default from FESTIVAL_HTTP_HOST/PORT")
    simulate.add_argument("--rate", type=float, default=5.0, help="webhooks per second")
    simulate.add_argument("--count", type=int, default=0, help="stop after this many webhooks; 0 runs until stopped")

    fake = commands.add_parser("fake-redetv-api", help="serve a FAKE REDETV!PLUS entitlements API on 127.0.0.1 (demo only)")
    fake.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")

    draw = commands.add_parser("draw", help="draw tools")
    draw_commands = draw.add_subparsers(dest="draw_command", required=True)
    verify = draw_commands.add_parser("verify", help="recompute a draw's winners from its public audit data")
    verify.add_argument("source", help="draw id (fetched from the API) or path to an audit JSON file")
    verify.add_argument("--url", default=None, help="API base URL; default from FESTIVAL_HTTP_HOST/PORT")
    return parser


def log_level(command: str, settings: Settings, environ: Mapping[str, str]) -> str:
    """Return the log level of `command`: WARNING for `draw`, unless FESTIVAL_LOG_LEVEL sets one.

    `festival draw verify` prints a Portuguese result for anyone to read; English progress lines
    on the same terminal would bury it.
    """
    if command == "draw" and "FESTIVAL_LOG_LEVEL" not in environ:
        return "WARNING"
    return settings.log_level


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)

    try:
        settings = load_settings()
    except SettingsError as error:
        print(f"festival: {error}", file=sys.stderr)
        return 2

    component = args.command if args.command != "consumer" else f"consumer-{args.name}"
    configure_logging(log_level(args.command, settings, os.environ), settings.log_format, component)

    from festival.telemetry import TelemetryConfigError

    try:
        if args.command in TELEMETRY_COMMANDS:
            return _dispatch_with_telemetry(args, settings, component)
        return _dispatch(args, settings)
    except (SettingsError, TelemetryConfigError) as error:
        print(f"festival: {error}", file=sys.stderr)
        return 2
    except (OSError, asyncpg.PostgresConnectionError, asyncpg.InvalidCatalogNameError) as error:
        # A server that is down at start is an operational state, not a bug: one line, no traceback.
        logger.error("start failed component=%s error=%r; check that PostgreSQL and the broker are reachable "
                     "at FESTIVAL_DATABASE_URL and FESTIVAL_MQTT_URL", component, error)
        return 1


def _dispatch_with_telemetry(args: argparse.Namespace, settings: Settings, component: str) -> int:
    from festival.telemetry import configured

    # The gateway serves its metrics on its own HTTP port, at /metrics.
    port = None if args.command == "gateway" else settings.metrics_port
    with configured(f"festival-{component}", metrics_host=settings.metrics_host, metrics_port=port):
        return _dispatch(args, settings)


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "up":
        from festival.launcher import run_platform

        return _run_until_signalled(lambda: run_platform(settings, demo=args.demo))
    if args.command == "migrate":
        from festival.db import migrate

        applied = asyncio.run(migrate(settings.require_database_url()))
        print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none pending'}")
        return 0
    if args.command == "consumer":
        return _run_until_signalled(_consumer(args.name, settings))
    if args.command == "simulate":
        from producers.simulator import run_simulator

        return _run_until_signalled(lambda: run_simulator(settings, url=args.url, rate=args.rate, count=args.count))
    if args.command == "fake-redetv-api":
        from producers.fake_redetv_api import serve_fake_api

        return _run_until_signalled(lambda: serve_fake_api(settings, args.port))
    if args.command == "draw":
        from festival.verify import verify_command

        return verify_command(settings, args.source, url=args.url)
    return _run_until_signalled(_component(args.command, settings))


if __name__ == "__main__":
    sys.exit(main())
