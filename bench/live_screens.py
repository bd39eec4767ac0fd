"""Measure how many live screens one Mosquitto serves and how fast a drawn number reaches all of them.

Starts its own Mosquitto on free loopback ports, opens up to `--screens` connections with the
read-only screen user (MQTT over WebSockets, as the browsers connect, or plain TCP), publishes
`--numbers` live steps with the service user and records when each screen received each one.
Bounded: at most 5,000 screens, and the connection phase stops at `--connect-seconds`.
Everything it started is stopped before it exits. Writes its section of bench/README.md.
"""

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path

import aiomqtt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from festival.services import Mosquitto, MosquittoCredentials, free_port  # noqa: E402

README = Path(__file__).with_name("README.md")
BEGIN = "<!-- live-screens:begin -->"
END = "<!-- live-screens:end -->"
MAX_SCREENS = 5000
CONNECT_BATCH = 100


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class Screen:
    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.received: dict[int, float] = {}

    async def listen(self) -> None:
        async for message in self.client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else b""
            self.received[int(payload.split(b" ", 1)[0])] = time.perf_counter()


async def connect_screens(broker: Mosquitto, count: int, transport: str, deadline: float, stack: AsyncExitStack, topic: str) -> list[Screen]:
    c = broker.credentials
    port = broker.ws_port if transport == "websockets" else broker.port
    screens: list[Screen] = []

    async def one() -> Screen | None:
        client = aiomqtt.Client(
            "127.0.0.1", port, username=c.screen_user, password=c.screen_password,
            transport=transport, identifier=f"bench-{uuid.uuid4().hex[:12]}", timeout=30,  # type: ignore[arg-type]
        )
        try:
            await stack.enter_async_context(client)
            await client.subscribe(topic, qos=0)
        except aiomqtt.MqttError as error:
            print(f"screen connect failed error={error}", file=sys.stderr)
            return None
        return Screen(client)

    while len(screens) < count and time.monotonic() < deadline:
        batch = min(CONNECT_BATCH, count - len(screens))
        results = await asyncio.gather(*(one() for _ in range(batch)))
        connected = [s for s in results if s is not None]
        screens.extend(connected)
        if len(connected) < batch:
            break
    return screens


async def run(args: argparse.Namespace) -> dict[str, object]:
    folder = Path(tempfile.mkdtemp(prefix="bench-live-"))
    broker = Mosquitto(folder, port=free_port(), ws_port=free_port(), credentials=MosquittoCredentials())
    broker.start()
    topic = f"festival/v1/draws/{uuid.uuid4()}/live"
    try:
        async with AsyncExitStack() as stack:
            started = time.monotonic()
            screens = await connect_screens(broker, args.screens, args.transport, started + args.connect_seconds, stack, topic)
            connect_seconds = time.monotonic() - started
            print(f"connected screens={len(screens)} seconds={connect_seconds:.1f}", file=sys.stderr)

            listeners = [asyncio.create_task(screen.listen()) for screen in screens]
            c = broker.credentials
            async with aiomqtt.Client("127.0.0.1", broker.port, username=c.service_user, password=c.service_password) as service:
                sent: dict[int, float] = {}
                for number in range(args.numbers):
                    sent[number] = time.perf_counter()
                    await service.publish(topic, f"{number} {'x' * 200}".encode(), qos=0)
                    # Wait until every screen has the number, as a screen waits between draws.
                    limit = time.monotonic() + 10
                    while any(number not in s.received for s in screens) and time.monotonic() < limit:
                        await asyncio.sleep(0.002)

            for task in listeners:
                task.cancel()

        deliveries = [(s.received[n] - sent[n]) * 1000 for s in screens for n in sent if n in s.received]
        all_screens = [max(s.received.get(n, float("inf")) for s in screens) - sent[n] for n in sent]
        missing = len(screens) * len(sent) - len(deliveries)
        return {
            "screens": len(screens),
            "connect_seconds": connect_seconds,
            "numbers": len(sent),
            "missing": missing,
            "delivery_p50": percentile(deliveries, 0.50),
            "delivery_p99": percentile(deliveries, 0.99),
            "all_p50": percentile([x * 1000 for x in all_screens], 0.50),
            "all_p99": percentile([x * 1000 for x in all_screens], 0.99),
        }
    finally:
        broker.stop()


def write_section(section: str) -> None:
    text = README.read_text(encoding="utf-8")
    if BEGIN in text and END in text:
        before, _, rest = text.partition(BEGIN)
        _, _, after = rest.partition(END)
        text = before + section + after
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    README.write_text(text, encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--screens", type=int, default=2000, help=f"screen connections to open, at most {MAX_SCREENS}")
    parser.add_argument("--numbers", type=int, default=50, help="live steps to publish")
    parser.add_argument("--transport", choices=["websockets", "tcp"], default="websockets")
    parser.add_argument("--connect-seconds", type=float, default=60.0, help="time limit of the connection phase, in seconds")
    parser.add_argument("--no-write", action="store_true", help="print the results without writing bench/README.md")
    args = parser.parse_args()
    args.screens = min(args.screens, MAX_SCREENS)

    result = asyncio.run(run(args))
    print(result)
    if args.no_write:
        return 0

    load = os.getloadavg()[0]
    section = f"""{BEGIN}
## Live screens: connections and time from a drawn number to every screen

- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC
- Machine: {os.cpu_count()} cores; Python {platform.python_version()}, Linux {platform.release()}, Mosquitto 2.0.11
- Load average (1 min) when the run ended: {load:.1f}; other processes share the machine.
- Command: `python bench/live_screens.py --screens {args.screens} --numbers {args.numbers} --transport {args.transport}`
- Screens are aiomqtt clients in one Python process with the read-only screen user ({args.transport}), subscribed with QoS 0 to one draw's `live` topic; the service user publishes 200-byte steps one at a time and waits until every screen has one before the next.

| screens connected | connect time | numbers | missing deliveries | one delivery p50 | one delivery p99 | all screens p50 | all screens p99 |
|---:|---:|---:|---:|---:|---:|---:|---:|
| {result['screens']:,} | {result['connect_seconds']:.1f} s | {result['numbers']} | {result['missing']} | {result['delivery_p50']:.1f} ms | {result['delivery_p99']:.1f} ms | {result['all_p50']:.1f} ms | {result['all_p99']:.1f} ms |

The times include the receiving Python process, which handles every screen on one core, so they
are an upper bound of the broker's own fan-out time; browsers on separate machines each handle one.
{END}"""
    write_section(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
