"""Webhook ingest throughput: the gateway beside a bare endpoint and a commit-per-request receiver.

All three run one after another in this run, on the same machine and the same embedded PostgreSQL,
under wrk (Debian package) with pre-signed, unique `charge.paid` requests (2 threads, 32
connections). The gateway verifies and validates every request it accepts, and commits its inbox
row and outbox event before it sends the response.

    python -m bench.ingest --seconds 5 --requests 30000
"""

import argparse
import asyncio
import base64
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from standardwebhooks import Webhook

from bench.receivers import NAIVE_SCHEMA
from festival.db import migrate
from festival.services import EmbeddedPostgres, free_port, stop_process, wait_for_port

# Each wrk thread has its own Lua state: thread i sends requests i, i + threads, i + 2 × threads ...
# so no two threads send the same pre-signed request.
LUA_TEMPLATE = """
local threads = 0
setup = function(thread)
  thread:set("offset", threads)
  threads = threads + 1
end
local requests = dofile("{data}")
local index = 0
request = function()
  local r = requests[(offset + index * 2) % #requests + 1]
  index = index + 1
  return wrk.format("POST", "/webhooks/nix", r[1], r[2])
end
"""


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


def write_lua(folder: Path, requests: list[tuple[dict[str, str], str]]) -> Path:
    def quote(text: str) -> str:
        return "[==[" + text + "]==]"

    lines = ["return {"]
    for headers, body in requests:
        header_table = ", ".join(f"[ {quote(k)} ] = {quote(v)}" for k, v in headers.items())
        lines.append(f"{{ {{{header_table}}}, {quote(body)} }},")
    lines.append("}")
    data = folder / "requests.lua"
    data.write_text("\n".join(lines))
    script = folder / "script.lua"
    script.write_text(LUA_TEMPLATE.format(data=data))
    return script


def run_wrk(port: int, script: Path, seconds: int) -> dict[str, float]:
    output = subprocess.run(
        ["wrk", "-t2", "-c32", f"-d{seconds}s", "--latency", "-s", str(script), f"http://127.0.0.1:{port}"],
        capture_output=True, text=True, check=True,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", output)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    return {
        "rate": rate,
        "p99_ms": float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan"),
        "errors": float(non_2xx.group(1)) if non_2xx else 0.0,
    }


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="duration of each wrk run")
    # wrk's Lua rejects a data file much over 30,000 requests ("too many constants").
    parser.add_argument("--requests", type=int, default=30_000, help="unique pre-signed requests per receiver, at most 30,000")
    args = parser.parse_args()
    if not 0 < args.requests <= 30_000:
        parser.error("--requests must be between 1 and 30000")
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2

    folder = Path(tempfile.mkdtemp(prefix="festival-ingest-"))
    postgres = EmbeddedPostgres(folder / "pgdata")
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    results: dict[str, dict[str, float]] = {}
    try:
        database_url = postgres.start()
        asyncio.run(prepare(database_url))
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        receivers = {
            "bare": lambda port: [sys.executable, "-m", "bench.receivers", "bare", str(port)],
            "naive": lambda port: [sys.executable, "-m", "bench.receivers", "naive", str(port), database_url, secret],
            "gateway": lambda port: [sys.executable, "-m", "festival.cli", "gateway"],
        }
        for name, command in receivers.items():
            port = free_port()
            script = write_lua(folder / name, presigned(secret, args.requests)) if (folder / name).mkdir() is None else None
            receiver_env = {
                **env,
                "FESTIVAL_DATABASE_URL": database_url,
                "FESTIVAL_NIX_WEBHOOK_SECRETS": secret,
                "FESTIVAL_HTTP_PORT": str(port),
                "FESTIVAL_LOG_LEVEL": "WARNING",
            }
            process = start(command(port), receiver_env, port)
            try:
                assert script is not None
                results[name] = run_wrk(port, script, args.seconds)
            finally:
                stop_process(process, name, timeout=15)
    finally:
        postgres.stop()
        shutil.rmtree(folder, ignore_errors=True)

    for name, result in results.items():
        print(f"{name:8s} {result['rate']:9.0f} requests/s  p99={result['p99_ms']:.1f} ms  non-2xx={result['errors']:.0f}")
    gateway = results["gateway"]["rate"]
    print(f"gateway/bare={gateway / results['bare']['rate']:.2f}  gateway/naive={gateway / results['naive']['rate']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
