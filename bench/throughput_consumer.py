"""The consumer process of bench/pipeline_throughput.py: `festival consumer payments` with a chosen apply.

    python -m bench.throughput_consumer --apply noop --report PATH

Runs `consumers.runner.run_consumer` as the `festival consumer` command does (same logging,
telemetry setup and uvloop), so the FastStream subscriptions, the pool and the exactly-once
`DeliveryHandler` are the production ones. Only the apply step changes: `noop` does nothing with
the event, `payments` is the payments consumer's own apply. Either way the process counts the
apply calls per event id in memory and, after SIGTERM has stopped the consumer, writes to
`--report` a JSON object: `calls`, `distinct` event ids, and `repeated`, the ids applied more than once.
"""

import argparse
import asyncio
import json
import signal
import sys
import types
from collections import Counter
from pathlib import Path

import asyncpg
import uvloop

from broker.envelope import Envelope
from consumers import payments
from consumers.delivery import Apply
from consumers.runner import run_consumer
from festival.logs import configure_logging
from festival.settings import Settings, load_settings
from festival.telemetry import configured

# `run_consumer` loads its consumer as the module `consumers.<name>`. `register` puts a module of
# this name in `sys.modules`, with the payments consumer's NAME, so it applies the payments topics.
MODULE_NAME = "bench_throughput"

apply_calls: Counter[str] = Counter()


async def apply_nothing(connection: asyncpg.Connection, envelope: Envelope) -> None:
    """Apply no effect, so only the messaging pipeline and the delivery row are measured."""


def counted(apply: Apply) -> Apply:
    async def apply_and_count(connection: asyncpg.Connection, envelope: Envelope) -> None:
        await apply(connection, envelope)
        # Counted after the apply returned; a retried transaction is counted again, which the
        # report shows as a repeated id.
        apply_calls[str(envelope.id)] += 1

    return apply_and_count


def register(kind: str) -> None:
    """Register the consumer module that `run_consumer(MODULE_NAME, ...)` will load."""

    def build(settings: Settings) -> Apply:
        return counted(apply_nothing if kind == "noop" else payments.build(settings))

    module = types.ModuleType(f"consumers.{MODULE_NAME}")
    module.NAME = payments.NAME  # type: ignore[attr-defined]
    module.build = build  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module


async def run_until_terminated(settings: Settings) -> None:
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, task.cancel)
    try:
        await run_consumer(MODULE_NAME, settings)
    except asyncio.CancelledError:
        pass


def write_report(path: Path) -> None:
    report = {
        "calls": sum(apply_calls.values()),
        "distinct": len(apply_calls),
        "repeated": [event_id for event_id, calls in apply_calls.items() if calls > 1],
    }
    path.with_suffix(".tmp").write_text(json.dumps(report))
    path.with_suffix(".tmp").replace(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--apply", choices=["noop", "payments"], default="noop", help="what the consumer does with each event")
    parser.add_argument("--report", type=Path, required=True, help="file that receives the apply counts after the stop")
    args = parser.parse_args()

    settings = load_settings()
    component = f"consumer-{payments.NAME}"
    configure_logging(settings.log_level, settings.log_format, component)
    register(args.apply)

    with configured(f"festival-{component}", metrics_host=settings.metrics_host, metrics_port=settings.metrics_port):
        uvloop.run(run_until_terminated(settings))
    write_report(args.report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
