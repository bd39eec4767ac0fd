"""Webhook-to-applied latency: signed NIX `charge.paid` webhooks at a steady rate through the platform.

Starts its own embedded PostgreSQL and Mosquitto on loopback and runs the gateway, the relay and
the payments and subscriptions consumers as separate processes, as `festival up` does. It
announces the subscriptions, then sends `--count` payment webhooks at `--rate` per second. The
latency is the payment's `recorded_at` minus the delivery's `received_at`, both from the
database clock. It also prints the CPU time each process used per webhook during the timed run.

    python bench/pipeline_latency.py --rate 500 --count 10000
"""

import argparse
import asyncio
import base64
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import psutil
from standardwebhooks import Webhook

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.host import cpu_seconds  # noqa: E402
from festival.db import migrate  # noqa: E402
from festival.services import EmbeddedPostgres, Mosquitto, MosquittoCredentials, free_port, wait_for_port  # noqa: E402


# REDETV!PLUS announces these subscriptions before the timed run, so every payment goes through
# the whole state machine instead of being held for an unknown subscription.
SUBSCRIPTIONS = 2000


def subscription_created(index: int) -> bytes:
    ref = f"sub_bench_{index}"
    body = {
        "event_id": f"rtv_{uuid.uuid4().hex}",
        "event": "subscription.created",
        "occurred_at": datetime.now(UTC).isoformat(),
        "subscription": {"id": ref, "user_id": f"usr_{index}", "plan": "mensal", "status": "created", "current_period_end": None},
        "user": {"id": f"usr_{index}", "name": "Maria Silva", "email": "maria@example.com", "cpf": "52998224725", "phone": "+5511999990000"},
    }
    return json.dumps(body).encode()


def charge_paid(index: int) -> bytes:
    now = datetime.now(UTC).isoformat()
    body = {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": "charge.paid",
        "created_at": now,
        "data": {
            "charge_id": f"ch_bench_{index}",
            "subscription_ref": f"sub_bench_{index % SUBSCRIPTIONS}",
            "amount": "29.90",
            "method": "card",
            "paid_at": now,
            "customer": {"name": "Maria Silva", "email": "maria@example.com", "cpf": "52998224725", "phone": "+5511999990000"},
        },
    }
    return json.dumps(body).encode()


def presigned_request(secret: str, path: str, body: bytes, port: int) -> bytes:
    message_id = f"msg_{uuid.uuid4().hex}"
    timestamp = datetime.now(UTC)
    headers = {
        "Host": f"127.0.0.1:{port}",
        "Content-Type": "application/json",
        "Content-Length": str(len(body)),
        "webhook-id": message_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, timestamp, body.decode()),
    }
    head = f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    return head.encode() + body


async def _exchange(connections: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]], request: bytes) -> int:
    reader, writer = await connections.get()
    try:
        writer.write(request)
        status_line = await reader.readline()
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        await reader.readexactly(length)
        return int(status_line.split()[1])
    finally:
        connections.put_nowait((reader, writer))


async def send_all(port: int, requests: list[bytes], rate: float) -> tuple[int, float]:
    """Send pre-signed requests over raw keep-alive connections, each at its scheduled time.

    httpx spends milliseconds of CPU per request, which caps a paced sender far below 500/s.
    """
    connections: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(64):
        connections.put_nowait(await asyncio.open_connection("127.0.0.1", port))

    started = time.perf_counter()
    tasks = []
    for index, request in enumerate(requests):
        delay = started + index / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(_exchange(connections, request)))
    statuses = await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started

    while not connections.empty():
        _, writer = connections.get_nowait()
        writer.close()
    return sum(1 for status in statuses if status == 202), elapsed


async def latencies(database_url: str, count: int, timeout: float) -> list[float]:
    connection = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + timeout
        while await connection.fetchval("SELECT count(*) FROM payments") < count and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        rows = await connection.fetch(
            "SELECT extract(epoch FROM p.recorded_at - i.received_at) * 1000 AS ms,"
            " extract(epoch FROM o.published_at - i.received_at) * 1000 AS relay_ms"
            " FROM payments p JOIN outbox o ON o.event_id = p.event_id"
            " JOIN inbox i ON o.event_id = ANY(i.event_ids)"
        )
    finally:
        await connection.close()
    relay = [float(row["relay_ms"]) for row in rows]
    if relay:
        # Published-at is stamped when the relay's batch commits, after every PUBACK of the batch.
        print(f"received-to-published ms: p50={percentile(relay, 0.5):.1f} p99={percentile(relay, 0.99):.1f}")
    return [float(row["ms"]) for row in rows]


async def wait_for_subscriptions(database_url: str, count: int) -> None:
    """Wait until the announcements and every event they caused are applied, so the timed run starts idle."""
    connection = await asyncpg.connect(database_url)
    try:
        async with asyncio.timeout(180):
            while (
                await connection.fetchval("SELECT count(*) FROM subscriptions") < count
                or await connection.fetchval("SELECT count(*) FROM deliveries WHERE status = 'pending'") > 0
            ):
                await asyncio.sleep(0.2)
    finally:
        await connection.close()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=500.0, help="webhooks per second")
    parser.add_argument("--count", type=int, default=10_000, help="webhooks to send")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="festival-bench-"))
    postgres = EmbeddedPostgres(folder / "pgdata")
    broker = Mosquitto(folder / "mosquitto", port=free_port(), ws_port=free_port(), credentials=MosquittoCredentials())
    children: list[subprocess.Popen[bytes]] = []
    try:
        admin_url = postgres.start()
        database_url = admin_url
        await migrate(database_url)
        broker.start()

        secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        redetv_secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        http_port = free_port()
        env = {
            **os.environ,
            "FESTIVAL_DATABASE_URL": database_url,
            "FESTIVAL_MQTT_URL": broker.service_url,
            "FESTIVAL_NIX_WEBHOOK_SECRETS": secret,
            "FESTIVAL_REDETV_WEBHOOK_SECRETS": redetv_secret,
            "FESTIVAL_HTTP_PORT": str(http_port),
            "FESTIVAL_LOG_LEVEL": "WARNING",
        }
        for command in (["gateway"], ["relay"], ["consumer", "payments"], ["consumer", "subscriptions"]):
            children.append(subprocess.Popen([sys.executable, "-m", "festival.cli", *command], env=env))
        wait_for_port("127.0.0.1", http_port, timeout=30)
        await asyncio.sleep(2)  # let the consumer subscribe before the clock starts

        announcements = [
            presigned_request(redetv_secret, "/webhooks/redetv", subscription_created(index), http_port)
            for index in range(SUBSCRIPTIONS)
        ]
        await send_all(http_port, announcements, 200.0)
        await wait_for_subscriptions(database_url, SUBSCRIPTIONS)

        payments = [presigned_request(secret, "/webhooks/nix", charge_paid(index), http_port) for index in range(args.count)]
        names = ("gateway", "relay", "payments", "subscriptions")
        processes = {name: child.pid for name, child in zip(names, children, strict=True)}
        # The PostgreSQL entry sums the postmaster and its backends. A backend that exited before
        # a reading is not counted, and the pools keep theirs open during a run.
        processes["postgresql"] = postgres.pid
        processes.update({"mosquitto": child.pid for child in psutil.Process().children() if child.name() == "mosquitto"})
        processes["sender"] = os.getpid()
        cpu_before = cpu_seconds(processes)
        accepted, elapsed = await send_all(http_port, payments, args.rate)
        values = await latencies(database_url, accepted, timeout=120)
        cpu_after = cpu_seconds(processes)
    finally:
        for child in children:
            child.terminate()
        for child in children:
            child.wait(15)
        broker.stop()
        postgres.stop()
        # The database of a 500/s run takes about 100 MB.
        shutil.rmtree(folder, ignore_errors=True)

    print(f"sent={args.count} accepted={accepted} offered_rate={args.rate:.0f}/s achieved_rate={args.count / elapsed:.0f}/s")
    print(
        f"webhook-to-applied ms: p50={percentile(values, 0.50):.1f} p90={percentile(values, 0.90):.1f}"
        f" p99={percentile(values, 0.99):.1f} max={max(values):.1f} mean={statistics.fmean(values):.1f} n={len(values)}"
    )
    # Includes idle polling and the benchmark's own queries, so it is an upper bound per webhook.
    used = {name: (cpu_after[name] - cpu_before[name]) * 1000 / args.count for name in cpu_before}
    cpu = "  ".join(f"{name}={value:.2f}" for name, value in used.items())
    print(f"cpu ms per webhook: {cpu}  total={sum(used.values()):.2f}")
    return 0 if len(values) == accepted == args.count else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
