"""Throughput of the relay and consumer pipeline beside raw aiomqtt QoS 1 through the same Mosquitto.

Starts its own embedded PostgreSQL and Mosquitto on free loopback ports, then measures one row
right after the other:

- raw: an aiomqtt QoS 1 publisher and an aiomqtt QoS 1 subscriber, each in its own process
  (bench/throughput_raw.py), pass `--count` payloads as long as a payment event's envelope.
  Time: from the first publish to the last message received.
- noop: `festival relay` and one consumer process that runs the production runner and
  `DeliveryHandler` with an apply that does nothing (bench/throughput_consumer.py). `--count`
  payment events and their delivery rows are committed to the outbox in one transaction through
  `Outbox.enqueue_envelopes`. Time: from that commit to the last delivery row marked applied,
  both read from the database clock.
- payments (with `--payments`): the same with the payments consumer's own apply.

Every row counts the messages or events that arrived and those received or applied twice, and the
command exits with status 1 unless each arrived, and was applied, exactly once. Bounded: at most
MAX_COUNT messages per row, each row ends at `--timeout`, and every process it started is
stopped by PID. Writes its section of bench/README.md.

    python -m bench.pipeline_throughput --count 10000

NOTE: with `--count` above Mosquitto's `max_queued_messages` (100,000 in broker/mosquitto.conf) a
receiver slower than its sender loses messages at the broker: the raw row then reports fewer
arrived, and the pipeline waits for the relay's redelivery 30 seconds later.
"""

import argparse
import asyncio
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.host import cpu_seconds  # noqa: E402
from bench.throughput_report import Round, RunContext, git_state, render_section, write_section  # noqa: E402
from broker import topics  # noqa: E402
from broker.envelope import Envelope  # noqa: E402
from festival.db import connect, migrate  # noqa: E402
from festival.outbox import Outbox, envelope_for  # noqa: E402
from festival.services import EmbeddedPostgres, Mosquitto, MosquittoCredentials, free_port, parent_death_signal  # noqa: E402
from festival.settings import Settings  # noqa: E402
from schemas.events import PaymentConfirmed  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# Mosquitto drops a QoS 1 message for a client that already has `max_queued_messages` (100,000 in
# broker/mosquitto.conf) queued beyond those in flight. At most that many messages per row keeps
# a receiver slower than its sender from losing any, so both rows measure throughput, not loss.
DEFAULT_COUNT = 10_000
MAX_COUNT = 100_000
# Events sent through the pipeline before the timed ones, so that the consumer's pool has opened
# its connections and every process has run each code path once.
WARMUP_EVENTS = 500
START_SECONDS = 60.0
POLL_SECONDS = 0.2
STOP_SECONDS = 15.0
# Subscription refs the payment events are spread over, as in bench/pipeline_latency.py.
SUBSCRIPTION_REFS = 2000
SOURCE = "/partners/nix"


@dataclass
class RawResult:
    count: int
    received: int
    repeated: int
    seconds: float  # first publish to last message received
    publish_seconds: float  # first publish to last PUBACK
    # CPU seconds during the row per process: "sender", "receiver" and the servers passed in.
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def throughput(self) -> float:
        return self.received / self.seconds if self.received == self.count and self.seconds > 0 else math.nan


@dataclass
class PipelineResult:
    apply: str
    count: int
    applied: int  # deliveries of the timed events marked applied
    pending: int
    dead: int
    redelivered: int  # deliveries of the timed events that the relay published more than once
    seconds: float  # commit to the last `applied_at`
    # The deliveries applied from their first publication, and the commit to the last of them.
    applied_first: int
    seconds_first: float
    apply_calls: int = 0  # calls of the consumer's apply over its whole run, warm-up included
    applied_total: int = 0  # deliveries marked applied in the database, warm-up included
    repeated: int = 0  # event ids whose apply ran more than once
    # CPU seconds during the row per process: "sender" (the relay), "receiver" (the consumer) and the servers.
    cpu: dict[str, float] = field(default_factory=dict)
    # Times Mosquitto logged "Outgoing messages are being dropped" during the row (-1: log not read).
    broker_drop_notices: int = -1

    @property
    def throughput(self) -> float:
        return self.applied / self.seconds if self.applied == self.count and self.seconds > 0 else math.nan

    @property
    def throughput_first(self) -> float:
        return self.applied_first / self.seconds_first if self.seconds_first > 0 else math.nan


def envelope_json(envelope: Envelope) -> bytes:
    """Serialise `envelope` as the relay does for its MQTT payload."""
    return json.dumps(envelope.model_dump(mode="json", exclude_none=True), ensure_ascii=False, separators=(",", ":")).encode()


def payment_envelopes(count: int, prefix: str) -> list[Envelope]:
    now = datetime.now(UTC)
    envelopes = []
    for index in range(count):
        event = PaymentConfirmed(
            charge_id=f"ch_{prefix}_{index}",
            subscription_ref=f"sub_bench_{index % SUBSCRIPTION_REFS}",
            amount=Decimal("29.90"),
            method="card",
            paid_at=now,
        )
        envelopes.append(envelope_for(event, source=SOURCE, subject=event.charge_id))
    return envelopes


def cpu_used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: after[name] - before[name] for name in before}


async def start_child(
    stack: AsyncExitStack, name: str, command: Sequence[str], env: dict[str, str], *, log: Path | None = None
) -> asyncio.subprocess.Process:
    """Start a child process that `stack` stops by PID; its stdout is a pipe unless `log` is given."""
    output = log.open("ab") if log is not None else None
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=REPO,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=output or asyncio.subprocess.PIPE,
        stderr=output,
        preexec_fn=parent_death_signal,
    )
    stack.push_async_callback(stop_child, process, name)
    if output is not None:
        output.close()
    return process


async def stop_child(process: asyncio.subprocess.Process, name: str) -> None:
    if process.returncode is not None:
        return
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), STOP_SECONDS)
    except TimeoutError:
        print(f"{name} ignored SIGTERM for {STOP_SECONDS:.0f} s, pid={process.pid}; killing it", file=sys.stderr)
        process.kill()
        await process.wait()


async def read_json_line(process: asyncio.subprocess.Process, name: str, timeout: float) -> dict[str, object]:
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), timeout)
    except TimeoutError:
        raise RuntimeError(f"{name} printed no result within {timeout:.0f} s") from None
    if not line:
        raise RuntimeError(f"{name} exited with code {await process.wait()} before printing its result")
    result: dict[str, object] = json.loads(line)
    return result


async def measure_raw(
    mqtt_url: str, topic: str, count: int, size: int, *, timeout: float, servers: dict[str, int] | None = None
) -> RawResult:
    """Pass `count` QoS 1 messages of `size` bytes from a publisher process to a subscriber process."""
    env = dict(os.environ)
    raw = [sys.executable, "-m", "bench.throughput_raw"]
    target = ["--url", mqtt_url, "--topic", topic, "--count", str(count)]
    async with AsyncExitStack() as stack:
        subscriber = await start_child(stack, "raw subscriber", [*raw, "subscribe", *target, "--timeout", str(timeout)], env)
        await read_json_line(subscriber, "raw subscriber", START_SECONDS)
        publisher = await start_child(stack, "raw publisher", [*raw, "publish", *target, "--size", str(size)], env)
        await read_json_line(publisher, "raw publisher", START_SECONDS)

        before = cpu_seconds(servers or {})
        assert publisher.stdin is not None
        publisher.stdin.write(b"go\n")
        published = await read_json_line(publisher, "raw publisher", timeout)
        received = await read_json_line(subscriber, "raw subscriber", timeout)
        cpu = cpu_used(before, cpu_seconds(servers or {}))

    # Both have exited by now, so they report their own CPU time.
    cpu["sender"] = number(published, "cpu")
    cpu["receiver"] = number(received, "cpu")
    first_publish = number(published, "first_publish")
    return RawResult(
        count=count,
        received=int(number(received, "received")),
        repeated=int(number(received, "repeated")),
        seconds=number(received, "last_receive") - first_publish,
        publish_seconds=number(published, "last_puback") - first_publish,
        cpu=cpu,
    )


def number(result: dict[str, object], key: str) -> float:
    value = result.get(key)
    if not isinstance(value, int | float):
        raise RuntimeError(f"child result field {key!r} is {value!r}, expected a number")
    return float(value)


def pipeline_env(settings: Settings) -> dict[str, str]:
    """Return the environment of the relay and consumer: the platform's defaults and this run's servers."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("FESTIVAL_", "OTEL_"))}
    env.update({
        "FESTIVAL_DATABASE_URL": settings.require_database_url(),
        "FESTIVAL_MQTT_URL": settings.require_mqtt_url(),
        "FESTIVAL_TOPIC_ROOT": settings.topic_root,
    })
    return env


async def enqueue(connection: asyncpg.Connection, outbox: Outbox, envelopes: list[Envelope]) -> datetime:
    """Commit `envelopes` to the outbox in one transaction and return the database clock just after the commit."""
    async with connection.transaction():
        await outbox.enqueue_envelopes(connection, [(PaymentConfirmed.TOPIC, envelope) for envelope in envelopes])
    committed_at: datetime = await connection.fetchval("SELECT clock_timestamp()")
    return committed_at


async def wait_until_nothing_pending(connection: asyncpg.Connection, timeout: float) -> bool:
    """Poll until no delivery is pending. Return False if some still are after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while await connection.fetchval("SELECT count(*) FROM deliveries WHERE status = 'pending'"):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(POLL_SECONDS)
    return True


async def wait_until_ready(connection: asyncpg.Connection, outbox: Outbox, timeout: float) -> None:
    """Send one probe event at a time until one is applied, which shows both processes ready.

    A probe that the relay published before the consumer had subscribed stays pending until its
    redelivery 30 s later, so the caller deletes the pending deliveries before the timed run.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        probe = payment_envelopes(1, f"probe_{time.monotonic_ns()}")
        await enqueue(connection, outbox, probe)

        probe_deadline = min(deadline, time.monotonic() + 1.0)
        while time.monotonic() < probe_deadline:
            status = await connection.fetchval("SELECT status FROM deliveries WHERE event_id = $1", probe[0].id)
            if status == "applied":
                return
            await asyncio.sleep(0.05)
    raise RuntimeError(f"no probe event was applied within {timeout:.0f} s; see relay.log and consumer.log")


async def timed_counts(connection: asyncpg.Connection, ids: list[object]) -> asyncpg.Record:
    row: asyncpg.Record = await connection.fetchrow(
        "SELECT count(*) FILTER (WHERE status = 'applied') AS applied,"
        " count(*) FILTER (WHERE status = 'pending') AS pending,"
        " count(*) FILTER (WHERE status = 'dead') AS dead,"
        " count(*) FILTER (WHERE publications > 0) AS redelivered,"
        " max(applied_at) AS last_applied,"
        " count(*) FILTER (WHERE status = 'applied' AND publications = 0) AS applied_first,"
        " max(applied_at) FILTER (WHERE publications = 0) AS last_applied_first"
        " FROM deliveries WHERE event_id = ANY($1::uuid[])",
        ids,
    )
    return row


async def measure_pipeline(
    settings: Settings,
    count: int,
    apply: str,
    folder: Path,
    *,
    timeout: float,
    servers: dict[str, int] | None = None,
    broker_log: Path | None = None,
) -> PipelineResult:
    """Run the relay and a consumer with `apply` as child processes and time `count` events through them.

    `broker_log` is Mosquitto's log file, read for the notices of dropped messages during the row.
    """
    outbox = Outbox.from_settings(settings)
    envelopes = payment_envelopes(count, f"run_{time.monotonic_ns()}")
    env = pipeline_env(settings)
    report = folder / f"apply-{apply}-{time.monotonic_ns()}.json"

    connection = await connect(settings.require_database_url())
    async with AsyncExitStack() as stack:
        stack.push_async_callback(connection.close)
        consumer_command = [sys.executable, "-m", "bench.throughput_consumer", "--apply", apply, "--report", str(report)]
        consumer = await start_child(stack, "consumer", consumer_command, env, log=folder / "consumer.log")
        relay = await start_child(stack, "relay", [sys.executable, "-m", "festival.cli", "relay"], env, log=folder / "relay.log")

        await wait_until_ready(connection, outbox, START_SECONDS)
        await connection.execute("DELETE FROM deliveries WHERE status = 'pending'")
        await enqueue(connection, outbox, payment_envelopes(min(WARMUP_EVENTS, count), f"warmup_{time.monotonic_ns()}"))
        if not await wait_until_nothing_pending(connection, START_SECONDS):
            raise RuntimeError(f"the warm-up events were not all applied within {START_SECONDS:.0f} s")

        log_offset = broker_log.stat().st_size if broker_log else 0
        pids = {"sender": relay.pid, "receiver": consumer.pid, **(servers or {})}
        committed_at = await enqueue(connection, outbox, envelopes)
        before = cpu_seconds(pids)
        await wait_until_nothing_pending(connection, timeout)
        cpu = cpu_used(before, cpu_seconds(pids))

        counts = await timed_counts(connection, [envelope.id for envelope in envelopes])
        applied_total = await connection.fetchval("SELECT count(*) FROM deliveries WHERE status = 'applied'")
        # The consumer writes its apply counts once stopped.
        await stop_child(consumer, "consumer")

    calls = json.loads(report.read_text()) if report.exists() else {"calls": -1, "repeated": []}
    return PipelineResult(
        apply=apply,
        count=count,
        applied=counts["applied"],
        pending=counts["pending"],
        dead=counts["dead"],
        redelivered=counts["redelivered"],
        seconds=seconds_between(committed_at, counts["last_applied"]),
        applied_first=counts["applied_first"],
        seconds_first=seconds_between(committed_at, counts["last_applied_first"]),
        apply_calls=calls["calls"],
        applied_total=applied_total,
        repeated=len(calls["repeated"]),
        cpu=cpu,
        broker_drop_notices=drop_notices(broker_log, log_offset) if broker_log else -1,
    )


def seconds_between(start: datetime, end: datetime | None) -> float:
    return (end - start).total_seconds() if end else math.nan


def drop_notices(log: Path, offset: int) -> int:
    """Count Mosquitto's notices of dropped outgoing messages written after `offset` bytes of `log`."""
    with log.open("rb") as file:
        file.seek(offset)
        return file.read().count(b"Outgoing messages are being dropped")


def database_url(admin_url: str, database: str) -> str:
    prefix, _, query = admin_url.partition("?")
    base = prefix.rsplit("/", 1)[0]
    return f"{base}/{database}?{query}" if query else f"{base}/{database}"


async def create_database(admin_url: str, name: str, template: str | None = None) -> str:
    connection = await asyncpg.connect(admin_url)
    try:
        clause = f' TEMPLATE "{template}"' if template else ""
        await connection.execute(f'CREATE DATABASE "{name}"{clause}')
    finally:
        await connection.close()
    return database_url(admin_url, name)


async def run_rounds(args: argparse.Namespace, folder: Path, payload_bytes: int) -> list[Round]:
    """Start PostgreSQL and Mosquitto, run every round's rows one after the other, and stop both."""
    postgres = EmbeddedPostgres(folder / "pgdata")
    broker = Mosquitto(folder / "mosquitto", port=free_port(), ws_port=free_port(), credentials=MosquittoCredentials())
    rounds = []
    try:
        admin_url = postgres.start()
        await migrate(await create_database(admin_url, "bench_template"))
        broker.start()
        servers = {"mosquitto": broker.pid or 0, "postgresql": postgres.pid or 0}
        broker_log = broker.folder / "mosquitto.log"
        applies = ["noop", "payments"] if args.payments else ["noop"]

        for number in range(1, args.repeats + 1):
            print(f"round {number}: raw load_1min={os.getloadavg()[0]:.2f}", file=sys.stderr)
            topic = f"{topics.DEFAULT_ROOT}/bench/raw"
            raw = await measure_raw(broker.service_url, topic, args.count, payload_bytes, timeout=args.timeout, servers=servers)
            print(f"  {raw}", file=sys.stderr)

            pipelines = []
            for apply in applies:
                print(f"round {number}: {apply} load_1min={os.getloadavg()[0]:.2f}", file=sys.stderr)
                url = await create_database(admin_url, f"bench_{number}_{apply}", template="bench_template")
                settings = Settings(database_url=url, mqtt_url=broker.service_url)
                row_folder = folder / f"round-{number}-{apply}"
                row_folder.mkdir()
                result = await measure_pipeline(
                    settings, args.count, apply, row_folder, timeout=args.timeout, servers=servers, broker_log=broker_log
                )
                print(f"  {result}", file=sys.stderr)
                pipelines.append(result)
            rounds.append(Round(raw, pipelines))
    finally:
        broker.stop()
        postgres.stop()
    return rounds


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--count",
        type=int,
        default=DEFAULT_COUNT,
        help=f"messages per row, at most {MAX_COUNT:,}. Above the broker's max_queued_messages a slow receiver loses some",
    )
    parser.add_argument("--payments", action="store_true", help="add a row with the payments consumer's own apply")
    parser.add_argument("--repeats", type=int, default=1, help="rounds of rows, each raw first, at most 5")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds after which a row stops waiting")
    parser.add_argument("--no-write", action="store_true", help="print the results without writing bench/README.md")
    args = parser.parse_args()
    if not 1 <= args.count <= MAX_COUNT:
        parser.error(f"--count takes values from 1 to {MAX_COUNT:,}")
    if not 1 <= args.repeats <= 5:
        parser.error("--repeats takes values from 1 to 5")
    return args


def command_line(args: argparse.Namespace) -> str:
    command = f"python -m bench.pipeline_throughput --count {args.count}"
    if args.payments:
        command += " --payments"
    if args.repeats > 1:
        command += f" --repeats {args.repeats}"
    return command


def exactly_once(rounds: list[Round]) -> bool:
    """Return whether every message arrived once and every event was applied once, in every row."""
    for round_ in rounds:
        if round_.raw.received != round_.raw.count or round_.raw.repeated:
            return False
        for result in round_.pipelines:
            if result.applied != result.count or result.repeated or result.apply_calls != result.applied_total:
                return False
    return True


def main() -> int:
    args = parse_args()
    commit, uncommitted = git_state(REPO)
    payload_bytes = len(envelope_json(payment_envelopes(1, "size")[0]))
    load_before = os.getloadavg()

    with tempfile.TemporaryDirectory(prefix="festival-throughput-") as folder:
        rounds = asyncio.run(run_rounds(args, Path(folder), payload_bytes))

    context = RunContext(command_line(args), payload_bytes, load_before, os.getloadavg(), commit, uncommitted, WARMUP_EVENTS)
    section = render_section(rounds, context)
    print(section)
    if not args.no_write:
        write_section(section)
    return 0 if exactly_once(rounds) else 1


if __name__ == "__main__":
    sys.exit(main())
