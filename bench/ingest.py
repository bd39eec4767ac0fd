"""Webhook ingest throughput: the gateway beside a bare endpoint and a commit-per-request receiver.

All three run one after another in this run, each as one process on the same machine and the
same embedded PostgreSQL, under wrk (Debian package) with pre-signed, unique `charge.paid`
requests (2 threads, 32 connections). The gateway verifies and validates every request it
accepts, and commits its inbox row and outbox event before it sends the response.

Each round runs every receiver twice: as fast as wrk's connections go (closed loop), then paced
at `--rate`, for the p99 target. With `--rounds` above 1 the medians of the rounds are printed
too, because other work on a shared machine moves single runs by a third or more.

    python -m bench.ingest --seconds 4 --requests 30000 --rounds 3 --rate 2000
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
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from standardwebhooks import Webhook

from bench.receivers import NAIVE_SCHEMA
from bench.wrk_load import WrkResult, run_wrk, write_script
from festival.db import migrate
from festival.services import EmbeddedPostgres, free_port, stop_process, wait_for_port

RECEIVERS = ("bare", "naive", "gateway")
# Receivers that record each request, for which a request sent twice would be a redelivery.
RECORDING = ("naive", "gateway")


def presigned(secret: str, count: int) -> list[tuple[dict[str, str], str]]:
    signer = Webhook(secret)
    now = datetime.now(UTC)
    requests = []
    for index in range(count):
        body = json.dumps({
            "id": f"evt_{uuid.uuid4().hex}",
            "type": "charge.paid",
            "created_at": now.isoformat(),
            "data": {
                "charge_id": f"ch_{index}_{uuid.uuid4().hex[:8]}",
                "subscription_ref": f"sub_{index % 20000}",
                "amount": "29.90",
                "method": "card",
                "paid_at": now.isoformat(),
                "customer": {"name": "Maria Silva", "email": "maria@example.com", "cpf": "52998224725", "phone": "+5511999990000"},
            },
        })
        message_id = f"msg_{uuid.uuid4().hex}"
        headers = {
            "Content-Type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signer.sign(message_id, now, body),
        }
        requests.append((headers, body))
    return requests


def start(command: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(command, env=env)
    wait_for_port("127.0.0.1", port, timeout=30)
    return process


async def prepare(database_url: str) -> None:
    await migrate(database_url)
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(NAIVE_SCHEMA)
    finally:
        await connection.close()


def print_result(round_number: int, name: str, load: str, result: WrkResult, unique: int) -> None:
    print(f"round {round_number} {name:8s} {load:9s} {result.rate:9.0f} requests/s  p99={result.p99_ms:.1f} ms"
          f"  non-2xx={result.non_2xx}  requests={result.requests}", flush=True)
    if name in RECORDING and result.requests > unique:
        print(f"warning: {name} got {result.requests} requests but only {unique} are unique;"
              " raise --requests or lower --seconds", file=sys.stderr)


def print_summary(results: dict[tuple[str, str], list[WrkResult]], rounds: int) -> None:
    for load in ("saturated", "paced"):
        for name in RECEIVERS:
            runs = results.get((name, load), [])
            if runs:
                print(f"median {name:8s} {load:9s} {statistics.median(r.rate for r in runs):9.0f} requests/s"
                      f"  p99={statistics.median(r.p99_ms for r in runs):.1f} ms  non-2xx={sum(r.non_2xx for r in runs)}")

    def ratios(other: str) -> list[float]:
        pairs = zip(results[("gateway", "saturated")], results[(other, "saturated")], strict=True)
        return [gateway.rate / run.rate for gateway, run in pairs]

    for other in ("bare", "naive"):
        per_round = ratios(other)
        rounds_text = ", ".join(f"{ratio:.2f}" for ratio in per_round)
        print(f"gateway/{other}: median {statistics.median(per_round):.2f} over {rounds} rounds ({rounds_text})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # At 6,000 requests/s, 4 s stays within the 30,000 unique requests that one data file can hold.
    parser.add_argument("--seconds", type=int, default=4, help="duration of each wrk run, in seconds")
    # wrk's Lua rejects a data file much over 30,000 requests ("too many constants").
    parser.add_argument("--requests", type=int, default=30_000, help="unique pre-signed requests per wrk run, at most 30,000")
    parser.add_argument("--rounds", type=int, default=3, help="times each receiver is measured; medians are printed")
    parser.add_argument("--rate", type=float, default=2000, help="requests/s of the paced run; 0 skips it")
    args = parser.parse_args()
    if not 0 < args.requests <= 30_000:
        parser.error("--requests must be between 1 and 30000")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2

    folder = Path(tempfile.mkdtemp(prefix="festival-ingest-"))
    postgres = EmbeddedPostgres(folder / "pgdata")
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    results: dict[tuple[str, str], list[WrkResult]] = {}
    print(f"load average before: {os.getloadavg()[0]:.1f}", flush=True)
    try:
        database_url = postgres.start()
        asyncio.run(prepare(database_url))
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        commands: dict[str, Callable[[int], list[str]]] = {
            "bare": lambda port: [sys.executable, "-m", "bench.receivers", "bare", str(port)],
            "naive": lambda port: [sys.executable, "-m", "bench.receivers", "naive", str(port), database_url, secret],
            "gateway": lambda port: [sys.executable, "-m", "festival.cli", "gateway"],
        }
        loads = [("saturated", 0.0)] + ([("paced", args.rate)] if args.rate > 0 else [])
        for round_number in range(1, args.rounds + 1):
            for name in RECEIVERS:
                port = free_port()
                receiver_env = {
                    **env,
                    "FESTIVAL_DATABASE_URL": database_url,
                    "FESTIVAL_NIX_WEBHOOK_SECRETS": secret,
                    "FESTIVAL_HTTP_PORT": str(port),
                    "FESTIVAL_LOG_LEVEL": "WARNING",
                }
                process = start(commands[name](port), receiver_env, port)
                try:
                    for load, rate in loads:
                        # Signed just before the run, so every timestamp is inside the gateway's window.
                        run_folder = folder / f"{name}-{load}-{round_number}"
                        run_folder.mkdir()
                        count = args.requests if rate == 0 else min(args.requests, int(rate * args.seconds * 1.5) + 1000)
                        script = write_script(run_folder, presigned(secret, count), "/webhooks/nix", rate)
                        result = run_wrk(port, script, args.seconds)
                        results.setdefault((name, load), []).append(result)
                        print_result(round_number, name, load, result, count)
                finally:
                    stop_process(process, name, timeout=15)
    finally:
        postgres.stop()
        shutil.rmtree(folder, ignore_errors=True)

    print_summary(results, args.rounds)
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
