"""The table and the bench/README.md section of bench/pipeline_throughput.py."""

import math
import os
import platform
import re
import subprocess
import textwrap
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from bench import results
from bench.host import cpu_model, mosquitto_version

if TYPE_CHECKING:
    from bench.pipeline_throughput import PipelineResult, RawResult

README = Path(__file__).with_name("README.md")
BEGIN = "<!-- pipeline-throughput:begin -->"
END = "<!-- pipeline-throughput:end -->"
# The platform's target: the pipeline with a no-op apply passes this share of raw aiomqtt QoS 1.
TARGET_RATIO = 0.70
# Code that the relay and the consumer run, for the note on uncommitted changes.
MEASURED_PATHS = ("producers", "consumers", "broker", "festival/outbox.py", "festival/db.py", "festival/settings.py")


@dataclass
class Round:
    raw: "RawResult"
    pipelines: list["PipelineResult"]


@dataclass
class RunContext:
    command: str
    payload_bytes: int
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    commit: str
    uncommitted: list[str]
    warmup_events: int


def git_state(repo: Path) -> tuple[str, list[str]]:
    """Describe HEAD and the last commit that changed MEASURED_PATHS, and list their uncommitted files."""
    def git(*arguments: str) -> str:
        return subprocess.run(["git", *arguments], cwd=repo, capture_output=True, text=True, check=False).stdout

    head = git("log", "-1", "--format=%h %s").strip()
    last_change = git("log", "-1", "--format=%h %s", "--", *MEASURED_PATHS).strip()
    # Porcelain lines are "XY path", where X or Y may be a space.
    status = git("status", "--porcelain", "--", *MEASURED_PATHS)
    description = f"{head or 'unknown'} (last change to {', '.join(MEASURED_PATHS)}: {last_change or 'unknown'})"
    return description, [line[3:] for line in status.splitlines()]


def ratio(result: "PipelineResult", raw: "RawResult") -> float:
    return result.throughput / raw.throughput


def cpu_per_message(result: "RawResult | PipelineResult", name: str) -> str:
    """Format the CPU time that process `name` used during the row, in milliseconds per message."""
    used = result.cpu.get(name)
    if used is None:
        return "–"
    return f"{used * 1000 / result.count:.3f}"


def total_cpu_per_message(result: "RawResult | PipelineResult") -> float:
    return sum(result.cpu.values()) * 1000 / result.count


def share(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.2f}"


def rate(value: float) -> str:
    return "incomplete" if math.isnan(value) else f"{value:,.0f}/s"


def table(rounds: list[Round]) -> list[str]:
    lines = [
        "| row | messages | arrived | twice | redelivered | time | throughput | ÷ raw"
        " | applied without redelivery | its throughput | CPU ms per message: sender | receiver | Mosquitto"
        " | PostgreSQL | all |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for round_ in rounds:
        raw = round_.raw
        lines.append(
            f"| raw aiomqtt | {raw.count:,} | {raw.received:,} | {raw.repeated} | – | {raw.seconds:.2f} s"
            f" | {rate(raw.throughput)} | 1.00 | – | – | {cpu_per_message(raw, 'sender')}"
            f" | {cpu_per_message(raw, 'receiver')} | {cpu_per_message(raw, 'mosquitto')} | –"
            f" | {total_cpu_per_message(raw):.3f} |"
        )
        for result in round_.pipelines:
            lines.append(
                f"| relay + consumer, {result.apply} apply | {result.count:,} | {result.applied:,}"
                f" | {result.repeated} | {result.redelivered:,} | {result.seconds:.2f} s | {rate(result.throughput)}"
                f" | {share(ratio(result, raw))} | {result.applied_first:,} in {result.seconds_first:.2f} s"
                f" | {rate(result.throughput_first)} | {cpu_per_message(result, 'sender')}"
                f" | {cpu_per_message(result, 'receiver')} | {cpu_per_message(result, 'mosquitto')}"
                f" | {cpu_per_message(result, 'postgresql')} | {total_cpu_per_message(result):.3f} |"
            )
    return lines


def max_queued_messages() -> str:
    """Return the `max_queued_messages` value of broker/mosquitto.conf, the configuration the bench's broker uses."""
    config = Path(__file__).resolve().parents[1] / "broker" / "mosquitto.conf"
    found = re.search(r"^max_queued_messages\s+(\d+)", config.read_text(), re.MULTILINE)
    return f"{int(found.group(1)):,}" if found else "Mosquitto's default"


def drops(rounds: list[Round]) -> str:
    """Explain the redelivered column when some row needed redelivery."""
    results = [result for round_ in rounds for result in round_.pipelines if result.redelivered]
    if not results:
        return ""
    notices = sum(max(result.broker_drop_notices, 0) for result in results)
    return (
        "Redelivered deliveries were lost on their first publication: Mosquitto logged \"Outgoing messages are"
        f" being dropped\" for the consumer {notices} time(s) during those rows. Mosquitto drops a QoS 1 message"
        " for a client when the client's queue, beyond the messages in flight, already holds `max_queued_messages`"
        f" ({max_queued_messages()} in broker/mosquitto.conf). The relay publishes without waiting for the"
        " consumer, so a backlog larger than that outruns it, and the relay publishes each lost event again once"
        " its delivery has been pending for 30 seconds (`FESTIVAL_REDELIVERY_AFTER_SECONDS`). The columns \"applied"
        " without redelivery\" and \"its throughput\" count only the deliveries applied from their first"
        " publication, from the commit to the last of them."
    )


def verdict(rounds: list[Round]) -> str:
    ratios = [ratio(result, round_.raw) for round_ in rounds for result in round_.pipelines if result.apply == "noop"]
    listed = ", ".join(f"{value:.2f}" for value in ratios)
    if not ratios or any(math.isnan(value) for value in ratios):
        return f"Target not met: a row did not complete (ratios {listed})."
    met = "met" if min(ratios) >= TARGET_RATIO else "not met"
    return f"Target {met}: relay + consumer (noop apply) ÷ raw = {listed} (target ≥ {TARGET_RATIO:.2f}). {cpu_comparison(rounds)}"


def cpu_comparison(rounds: list[Round]) -> str:
    """Compare the CPU per message of the last round's noop row with its raw row."""
    raw = rounds[-1].raw
    noop = [result for result in rounds[-1].pipelines if result.apply == "noop"]
    if not noop:
        return ""
    pipeline = noop[0]
    return (
        f"Per message, the pipeline's processes used {total_cpu_per_message(pipeline):.3f} ms of CPU against"
        f" {total_cpu_per_message(raw):.3f} ms for raw aiomqtt"
        f" ({total_cpu_per_message(pipeline) / total_cpu_per_message(raw):.1f} times as much). The consumer alone used"
        f" {cpu_per_message(pipeline, 'receiver')} ms, the relay {cpu_per_message(pipeline, 'sender')} ms."
    )


def machine() -> str:
    return f"{cpu_model()}, {os.cpu_count()} cores; Python {platform.python_version()}, Linux {platform.release()}, Mosquitto {mosquitto_version()}"


def load(values: tuple[float, float, float]) -> str:
    return " / ".join(f"{value:.2f}" for value in values)


def bullet(text: str) -> str:
    return textwrap.fill(text, width=104, initial_indent="- ", subsequent_indent="  ", break_on_hyphens=False)


def render_section(rounds: list[Round], context: RunContext) -> str:
    uncommitted = ", ".join(context.uncommitted) if context.uncommitted else "none"
    count = rounds[0].raw.count
    bullets = [
        f"Target: the relay and consumer pipeline passes at least {TARGET_RATIO:.0%} of the messages per second"
        " that raw aiomqtt QoS 1 passes through the same Mosquitto (column \"÷ raw\" of the noop apply rows).",
        f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"Machine: {machine()}; embedded PostgreSQL",
        f"Load average (1 / 5 / 15 min): {load(context.load_before)} before the run, {load(context.load_after)}"
        " after. Other processes share the machine.",
        f"Command: `{context.command}`",
        f"Code measured: commit {context.commit}. Uncommitted changes in the relay's and consumer's code: {uncommitted}.",
        f"Messages: {count:,} per row, MQTT 5, QoS 1, payloads of {context.payload_bytes} bytes (a `payment.confirmed`"
        " envelope as the relay serialises it). The rows run one right after the other on the same Mosquitto.",
        "raw aiomqtt: a publisher process (up to 500 publish calls open at once and 100 messages in flight) and a"
        " subscriber process on one topic, both aiomqtt on uvloop. Time: first publish to last message received"
        " (CLOCK_MONOTONIC, shared by the processes).",
        "relay + consumer: `festival relay` and one consumer process that runs `consumers.runner.run_consumer`"
        " for the payments topics, as `festival consumer payments` does (FastStream subscriber on the shared"
        " subscription, exactly-once `DeliveryHandler`), with its apply replaced. The noop apply does nothing with"
        " the event, so the row measures the messaging pipeline (outbox, relay, MQTT, consumer, delivery row) and"
        " not a consumer's business logic. The payments apply is the payments consumer's own, on payments whose"
        " subscription is unknown, so each is recorded and held."
        f" After probe events that show both processes ready and {context.warmup_events} warm-up events, all events"
        " of the row are committed to the outbox in one transaction (`Outbox.enqueue_envelopes`). Time: that"
        " commit to the last delivery's `applied_at` (database clock).",
        "Arrived: messages received (raw), or delivery rows of the row's events marked applied (pipeline). Twice:"
        " messages the subscriber received again, or event ids whose apply the consumer ran more than once."
        " Redelivered: deliveries that the relay published again because they were still pending after 30 seconds."
        " CPU: CPU time (user + system) during the row ÷ messages, of the sender (publisher or relay), the"
        " receiver (subscriber or consumer), Mosquitto and PostgreSQL (all backends, the benchmark's own polling"
        f" included). On {os.cpu_count()} cores, {(os.cpu_count() or 1) * 1000:,} ms ÷ \"all\" bounds the messages"
        " per second that a row could reach.",
    ]
    explanation = drops(rounds)
    lines = [
        BEGIN,
        "## Pipeline throughput: relay and consumer beside raw aiomqtt QoS 1",
        "",
        *(bullet(text) for text in bullets),
        "",
        *table(rounds),
        "",
        textwrap.fill(verdict(rounds), width=104),
        *(["", textwrap.fill(explanation, width=104)] if explanation else []),
        END,
    ]
    return "\n".join(lines)


def write_section(section: str, readme: Path = README) -> None:
    results.write_section(BEGIN, END, section, readme)
