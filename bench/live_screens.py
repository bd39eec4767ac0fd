"""Measure how many live screens one Mosquitto serves and how fast a drawn number reaches all of them.

Starts its own Mosquitto on free loopback ports (the platform's `festival.services.Mosquitto`,
configuration and ACL) and spreads `--screens` lean screens over `--processes` receiver
processes (see `bench/screen_client.py`). Each screen connects with the read-only screen user
over the broker's WebSocket listener with the subprotocol `mqtt`, as the browsers do, and
subscribes with QoS 1 to the topics the live page follows. The service user opens the draw with
its `started` step, then publishes `--numbers` drawn numbers at QoS 1, each once every screen has
the previous one. With `--traffic page` the messages are the draws consumer's: the opening also
carries the retained state and `draws/current`, and every number is the live step and the
retained state (which grows by one step per number). Each screen leaves the state topic after its
first live step, as the live page does, so a number reaches it as the live step alone. With
`--traffic step` every message is a live step alone.

Times are CLOCK_MONOTONIC (`time.monotonic()`), which all processes of one Linux machine share:
from just before the live step's publish to the moment a screen's bytes carrying it arrived.
Bounded: at most 12,000 screens per run, the connection phase ends at `--connect-seconds`, each
step waits at most `--step-timeout`. Every process it started is stopped by PID before it exits.
Writes its section of bench/README.md.
"""

import argparse
import asyncio
import itertools
import os
import platform
import shutil
import sys
import tempfile
import time
import uuid
from array import array
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiomqtt
import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import results  # noqa: E402
from bench.host import mosquitto_version  # noqa: E402
from bench.screen_client import ScreenSettings  # noqa: E402
from bench.screen_pool import ScreenPool  # noqa: E402
from bench.screen_traffic import SEQUENCE_OFFSET, DrawScript  # noqa: E402
from festival.services import Mosquitto, MosquittoCredentials, free_port, open_files_limit  # noqa: E402

README = Path(__file__).with_name("README.md")
BEGIN = "<!-- live-screens:begin -->"
END = "<!-- live-screens:end -->"
MAX_SCREENS = 12_000
# The platform's target: a drawn number reaches every one of 10,000 screens within this, at p99.
TARGET_MS = 500.0


@dataclass
class RunResult:
    screens_requested: int
    traffic: str
    connected: int
    failed: int
    first_error: str
    connect_seconds: float
    numbers: int
    missing: int
    dropped: int
    received: int  # messages the screens received after the opening, on every topic
    delivery_p50: float
    delivery_p99: float
    all_p50: float
    all_p99: float
    broker_cpu_seconds: float
    receivers_cpu_seconds: float
    publish_seconds: float
    broker_open_files: int | None


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def summarize(sent: list[float], times: list[list["array[float]"]]) -> tuple[int, list[float], list[float]]:
    """Return missing deliveries, every delivery's latency and each number's all-screens latency, in ms."""
    deliveries: list[float] = []
    all_screens: list[float] = []
    missing = 0
    for index, started in enumerate(sent):
        arrivals = np.concatenate([np.frombuffer(worker[index], dtype=np.float64) for worker in times if worker])
        received = arrivals[~np.isnan(arrivals)]
        missing += int(arrivals.size - received.size)
        if received.size:
            latencies = (received - started) * 1000
            deliveries.extend(latencies.tolist())
            all_screens.append(float(latencies.max()))
    return missing, deliveries, all_screens


def percentile(values: list[float], fraction: float) -> float:
    return float(np.percentile(values, fraction * 100)) if values else float("nan")


def service_client(broker: Mosquitto) -> aiomqtt.Client:
    c = broker.credentials
    return aiomqtt.Client("127.0.0.1", broker.port, username=c.service_user, password=c.service_password)


async def open_draw(service: aiomqtt.Client, pool: ScreenPool, script: DrawScript, step_timeout: float) -> None:
    """Publish the draw's opening messages one after another and wait until every screen has them."""
    for topic, payload, retain in script.opening():
        await service.publish(topic, payload, qos=1, retain=retain, timeout=10)
    if not await pool.wait_opened(step_timeout):
        print(f"opening timed out timeout_s={step_timeout}", file=sys.stderr)


async def publish_numbers(service: aiomqtt.Client, pool: ScreenPool, script: DrawScript, step_timeout: float) -> list[float]:
    """Publish every number's messages at QoS 1, as the relay does; return each live step's send time."""
    sent: list[float] = []
    for number in range(1, script.numbers + 1):
        messages = script.messages(number)
        sent.append(time.monotonic())
        # The relay publishes a batch concurrently and waits for every PUBACK.
        await asyncio.gather(*(service.publish(topic, payload, qos=1, retain=retain, timeout=10) for topic, payload, retain in messages))
        if not await pool.wait_done(number, step_timeout):
            print(f"step timed out number={number} timeout_s={step_timeout}", file=sys.stderr)
    return sent


async def run_once(screens: int, traffic: str, args: argparse.Namespace) -> RunResult:
    """Start a broker and the receivers, draw the numbers, stop everything and summarize one run."""
    folder = Path(tempfile.mkdtemp(prefix="bench-live-"))
    broker = Mosquitto(folder, port=free_port(), ws_port=free_port(), credentials=MosquittoCredentials())
    broker.start()
    try:
        assert broker.pid is not None
        broker_open_files = open_files_limit(broker.pid)
        script = DrawScript(uuid.uuid4(), args.numbers, with_state=traffic == "page")
        pool = ScreenPool(
            screen_settings(broker, script, args.transport, args.screen_qos),
            screens=screens,
            processes=args.processes,
            numbers=args.numbers,
            per_step=script.per_step,
            connect_deadline=time.monotonic() + args.connect_seconds,
        )
        try:
            started = time.monotonic()
            pool.start()
            connected, failed, first_error = await pool.wait_connected(args.connect_seconds + 30)
            connect_seconds = time.monotonic() - started
            print(f"connected screens={connected} failed={failed} seconds={connect_seconds:.1f} error={first_error!r}", file=sys.stderr)

            sent: list[float] = []
            async with service_client(broker) as service:
                if connected:
                    await open_draw(service, pool, script, args.step_timeout)
                cpu_before = cpu_seconds([broker.pid]), cpu_seconds(pool.pids)
                publish_started = time.monotonic()
                if connected:
                    sent = await publish_numbers(service, pool, script, args.step_timeout)
                publish_seconds = time.monotonic() - publish_started
                broker_cpu = cpu_seconds([broker.pid]) - cpu_before[0]
                receivers_cpu = cpu_seconds(pool.pids) - cpu_before[1]

            times, dropped, received = await pool.collect(timeout=60)
        finally:
            pool.stop()
    finally:
        broker.stop()
        shutil.rmtree(folder, ignore_errors=True)

    missing, deliveries, all_screens = summarize(sent, times)
    return RunResult(
        screens_requested=screens, traffic=traffic, connected=connected, failed=failed, first_error=first_error,
        connect_seconds=connect_seconds, numbers=len(sent), missing=missing, dropped=dropped, received=received,
        delivery_p50=percentile(deliveries, 0.50), delivery_p99=percentile(deliveries, 0.99),
        all_p50=percentile(all_screens, 0.50), all_p99=percentile(all_screens, 0.99),
        broker_cpu_seconds=broker_cpu, receivers_cpu_seconds=receivers_cpu, publish_seconds=publish_seconds,
        broker_open_files=broker_open_files,
    )


def screen_settings(broker: Mosquitto, script: DrawScript, transport: str, qos: int) -> ScreenSettings:
    c = broker.credentials
    return ScreenSettings(
        host="127.0.0.1",
        port=broker.ws_port if transport == "websockets" else broker.port,
        username=c.screen_user,
        password=c.screen_password,
        topics=script.subscriptions,
        live_index=script.live_index,
        websocket=transport == "websockets",
        qos=qos,
        leave_index=script.leave_index,
        sequence_offset=SEQUENCE_OFFSET,
    )


def command_line(args: argparse.Namespace) -> str:
    screens = " ".join(str(count) for count in args.screens)
    return (
        f"python bench/live_screens.py --screens {screens} --traffic {' '.join(args.traffic)} --processes {args.processes}"
        f" --numbers {args.numbers} --transport {args.transport} --screen-qos {args.screen_qos}"
    )


def milliseconds(value: float) -> str:
    return f"{value:.0f} ms" if value >= 100 else f"{value:.1f} ms"


def table_row(result: RunResult) -> str:
    numbers = max(result.numbers, 1)
    messages_per_screen = result.received / max(result.connected * numbers, 1)
    met = "yes" if result.connected == result.screens_requested and result.missing == 0 and result.all_p99 <= TARGET_MS else "no"
    return (
        f"| {result.traffic} | {result.screens_requested:,} | {result.connected:,} | {result.connect_seconds:.1f} s"
        f" | {result.missing} | {milliseconds(result.delivery_p50)} | {milliseconds(result.delivery_p99)}"
        f" | {milliseconds(result.all_p50)} | {milliseconds(result.all_p99)} | {met}"
        f" | {messages_per_screen:.2f}"
        f" | {milliseconds(result.broker_cpu_seconds * 1000 / numbers)} | {milliseconds(result.receivers_cpu_seconds * 1000 / numbers)} |"
    )


def render_section(args: argparse.Namespace, results: list[RunResult], load_before: float, load_after: float) -> str:
    rows = "\n".join(table_row(result) for result in results)
    limits = sorted({str(result.broker_open_files) for result in results})
    failed = sum(result.failed for result in results)
    dropped = sum(result.dropped for result in results)
    errors = sorted({result.first_error for result in results if result.first_error})
    transport = (
        "over WebSocket frames (the `websockets` package's sans-I/O client, subprotocol `mqtt`)"
        if args.transport == "websockets"
        else "over plain TCP"
    )
    return f"""{BEGIN}
## Live screens: connections and time from a drawn number to every screen

- Target: 10,000 WebSocket screens on one Mosquitto, and a drawn number reaches every screen within
  {TARGET_MS:.0f} ms at p99 (column "all screens p99"). The column "p99 ≤ 500 ms" also requires every screen connected and no delivery missing.
- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC
- Machine: {os.cpu_count()} cores; Python {platform.python_version()}, Linux {platform.release()}, Mosquitto {mosquitto_version()}
- Load average (1 min): {load_before:.1f} before the runs, {load_after:.1f} after. It counts the benchmark's own processes
  (receivers, Mosquitto, publisher), and other processes share the machine.
- Command: `{command_line(args)}`
- Mosquitto's open files limit (soft RLIMIT_NOFILE) during the runs: {", ".join(limits)}.
  Failed connections: {failed}; screens dropped after connecting: {dropped}{"; first errors: " + "; ".join(errors) if errors else ""}.
- Receivers: {args.processes} processes on uvloop, each keeping its share of the screens as one asyncio Protocol
  per screen. A screen speaks MQTT 3.1.1 {transport}.
  It connects with the read-only screen user, a clean session and a 15 s keep-alive. It subscribes with QoS {args.screen_qos}
  to `draws/current`, `draws/{{id}}/state` and `draws/{{id}}/live`, as the live page does (with QoS 1), and acknowledges
  each QoS 1 message with PUBACK. With `page` traffic it leaves `draws/{{id}}/state` (UNSUBSCRIBE) after its first
  live step, as the live page does once it has the state and every step after it.
- Traffic: the service user opens the draw with its `started` step and waits until every screen has it (and, with `page`,
  has left the state topic). Then it publishes {args.numbers} numbers at QoS 1, the next one once every screen has the previous one.
  `page`: the opening also carries the retained state and `draws/current`; per number the live step and the retained
  draw state (which grows with each number drawn), concurrently, as the relay publishes what the draws consumer wrote.
  `draws/current` changes only with the draw's status, so no number carries it. `step`: every message is a live step alone.
- Messages per screen per number: every message the screens received after the opening, on any topic, divided by
  the screens connected and the numbers drawn.
- One delivery: from just before the publish of a live step to the arrival of the bytes carrying it at one screen
  (CLOCK_MONOTONIC, which the processes share). All screens: the same up to the last screen that received it, per number.
  Broker CPU and receivers CPU: CPU time (user + system) of Mosquitto and of all receiver processes during the
  numbers' publish phase (after the opening), divided by the numbers drawn.

| traffic | screens | connected | connect time | missing deliveries | one delivery p50 | one delivery p99 | all screens p50 | all screens p99 | p99 ≤ 500 ms | messages per screen per number | broker CPU per number | receivers CPU per number |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|
{rows}
{END}"""


def write_section(section: str) -> None:
    results.write_section(BEGIN, END, section, README)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--screens", type=int, nargs="+", default=[2000], help=f"screens of each run, one run per value, at most {MAX_SCREENS:,}")
    parser.add_argument("--traffic", choices=["page", "step"], nargs="+", default=["page"], help="messages per number, with one run per value and screen count")
    parser.add_argument("--processes", type=int, default=4, help="receiver processes the screens are spread over")
    parser.add_argument("--numbers", type=int, default=50, help="numbers drawn per run")
    parser.add_argument("--transport", choices=["websockets", "tcp"], default="websockets", help="how screens reach the broker")
    parser.add_argument("--screen-qos", type=int, choices=[0, 1], default=1, help="QoS of the screens' subscriptions (the live page uses 1)")
    parser.add_argument("--connect-seconds", type=float, default=120.0, help="time limit of the connection phase, in seconds")
    parser.add_argument("--step-timeout", type=float, default=10.0, help="maximum wait for every screen to receive one number, in seconds")
    parser.add_argument("--no-write", action="store_true", help="print the results without writing bench/README.md")
    args = parser.parse_args()
    if any(count < 1 or count > MAX_SCREENS for count in args.screens):
        parser.error(f"--screens takes values from 1 to {MAX_SCREENS:,}")
    if args.processes < 1:
        parser.error("--processes must be at least 1")
    return args


async def run_all(args: argparse.Namespace) -> list[RunResult]:
    results = []
    for screens, traffic in itertools.product(args.screens, args.traffic):
        print(f"run screens={screens} traffic={traffic} load_1min={os.getloadavg()[0]:.1f}", file=sys.stderr)
        result = await run_once(screens, traffic, args)
        print(result, file=sys.stderr)
        results.append(result)
    return results


def main() -> int:
    args = parse_args()
    load_before = os.getloadavg()[0]
    results = asyncio.run(run_all(args))
    load_after = os.getloadavg()[0]

    section = render_section(args, results, load_before, load_after)
    print(section)
    if not args.no_write:
        write_section(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
