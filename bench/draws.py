"""Benchmark the draw core: freeze (sort and hash the snapshot), draw, and verify from an audit file.

Usage: python bench/draws.py [--sizes 1000000 10000000] [--repeat 3] [--postgres] [--no-write]

Entries are unique random numbers in a draw of 1,000 series (100,000,000 numbers), as a numpy array in
random order, which is how the draws consumer would read them from PostgreSQL. Each step is timed
`--repeat` times and the median is reported. Verification runs `festival draw verify` on an audit
JSON file, from reading the file to the verdict. Results replace the draws section of bench/README.md.

With --postgres, an embedded PostgreSQL is started in a temporary folder. Each size then also times
reading the entries out of `lucky_numbers` as bytes with SNAPSHOT_QUERY and freezing them with
`freeze_bytes`. Inserting the rows first is not timed and takes a while for 10,000,000 rows.
"""

import argparse
import asyncio
import contextlib
import io
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import results  # noqa: E402
from bench.host import cpu_model  # noqa: E402
from festival.domain.draw_audit import encode_entries  # noqa: E402
from festival.domain.draw_loteria import loteria_winners  # noqa: E402
from festival.domain.draws import Snapshot, commitment, draw_winners, freeze_numbers, new_seed, freeze_bytes  # noqa: E402
from festival.domain.lucky_numbers import number_space  # noqa: E402
from festival.settings import Settings  # noqa: E402
from festival.verify import verify_command  # noqa: E402
from schemas.draws import AuditPrize, AuditSnapshot, AuditWinner, DrawAudit  # noqa: E402

SERIES = 1000
PRIZES = 10
LOTERIA = ["50366", "33514", "45504", "94365", "51105"]
README = Path(__file__).with_name("README.md")
BEGIN, END = "<!-- draws:begin -->", "<!-- draws:end -->"
TARGET_SECONDS = 10.0

# int8send writes a bigint as 8 big-endian bytes. The aggregate has no ORDER BY because numpy sorts
# faster: with it, 3,000,000 entries in random order took 9.4 s to read instead of 0.9 s.
SNAPSHOT_QUERY = (
    "SELECT coalesce(string_agg(int8send(number), ''::bytea), ''::bytea)"
    " FROM lucky_numbers WHERE draw_id = $1 AND voided_at IS NULL"
)

T = TypeVar("T")


def timed(step: Callable[[], T], repeat: int) -> tuple[float, T]:
    """Run `step` `repeat` times and return the median wall time in seconds with the last result."""
    durations = []
    result: T
    for _ in range(repeat):
        started = time.perf_counter()
        result = step()
        durations.append(time.perf_counter() - started)
    return statistics.median(durations), result


def make_audit(snapshot: Snapshot, seed: str) -> DrawAudit:
    winners = draw_winners(seed, snapshot, PRIZES)
    return DrawAudit(
        draw_id=uuid.uuid4(),
        title="Benchmark",
        status="completed",
        series=SERIES,
        prizes=[AuditPrize(position=i, description=f"Prêmio {i}") for i in range(1, PRIZES + 1)],
        commitment=commitment(seed),
        cutoff_at=datetime.now(UTC),
        snapshot=AuditSnapshot(sha256=snapshot.sha256, count=snapshot.count, entries=encode_entries(snapshot.numbers)),
        seed=seed,
        winners=[AuditWinner(position=w.position, number=w.number) for w in winners],
    )


def verify_file(path: Path) -> int:
    with contextlib.redirect_stdout(io.StringIO()):
        return verify_command(Settings(), str(path))


def measure(size: int, repeat: int, rng: np.random.Generator, database_url: str | None) -> dict[str, float | int]:
    numbers = rng.choice(number_space(SERIES), size=size, replace=False)
    seed = new_seed()
    postgres_seconds = asyncio.run(measure_postgres(database_url, numbers, repeat)) if database_url else -1.0

    freeze_seconds, snapshot = timed(lambda: freeze_numbers(numbers), repeat)
    draw_seconds, _ = timed(lambda: draw_winners(seed, snapshot, PRIZES), repeat)
    loteria_seconds, _ = timed(lambda: loteria_winners(LOTERIA, SERIES, snapshot, PRIZES), repeat)

    encode_seconds, audit = timed(lambda: make_audit(snapshot, seed), 1)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "audit.json"
        path.write_text(audit.model_dump_json(), encoding="utf-8")
        audit_bytes = path.stat().st_size
        verify_seconds, exit_code = timed(lambda: verify_file(path), repeat)
    if exit_code != 0:
        raise SystemExit(f"verification of the benchmark draw failed with exit code {exit_code}")

    return {
        "entries": size,
        "freeze": freeze_seconds,
        "draw": draw_seconds,
        "loteria": loteria_seconds,
        "encode": encode_seconds,
        "verify": verify_seconds,
        "audit_bytes": audit_bytes,
        "postgres": postgres_seconds,
    }


async def measure_postgres(url: str, numbers: np.ndarray, repeat: int) -> float:
    """Insert `numbers` as one draw's lucky numbers, then time reading them back as a snapshot."""
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        draw_id = uuid.uuid4()
        await connection.execute(
            "INSERT INTO draws (id, title, scheduled_at, cutoff_at, series, number_key)"
            " VALUES ($1, 'Benchmark', now(), now(), $2, 'key')",
            draw_id, SERIES,
        )
        await connection.copy_records_to_table(
            "lucky_numbers",
            records=((draw_id, int(number), "sub", "charge") for number in numbers),
            columns=["draw_id", "number", "subscription_ref", "charge_id"],
        )
        await connection.execute("VACUUM ANALYZE lucky_numbers")

        durations = []
        for _ in range(repeat):
            started = time.perf_counter()
            snapshot = freeze_bytes(await connection.fetchval(SNAPSHOT_QUERY, draw_id))
            durations.append(time.perf_counter() - started)
        if snapshot.count != numbers.size:
            raise SystemExit(f"read {snapshot.count} entries back from PostgreSQL, expected {numbers.size}")
        return statistics.median(durations)
    finally:
        await connection.close()


def machine() -> str:
    cpu = cpu_model()
    memory = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 1024**2:.0f} GiB memory"
    return (f"{cpu}, {os.cpu_count()} cores{memory}; Python {platform.python_version()}, "
            f"numpy {np.__version__}, {platform.system()} {platform.release()}")


def render(results: list[dict[str, float | int]], command: str) -> str:
    lines = [
        BEGIN,
        "## Draws: freeze, draw and verify",
        "",
        f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- Machine: {machine()}",
        f"- Load average (1 min) when the run ended: {os.getloadavg()[0]:.1f}; other processes share the machine.",
        f"- Command: `{command}`",
        f"- Draw: {SERIES:,} series ({number_space(SERIES):,} numbers), {PRIZES} prizes, entries in random order;"
        " median of the repeats.",
        f"- Target: freeze + draw ≤ {TARGET_SECONDS:.0f} s and verification ≤ {TARGET_SECONDS:.0f} s"
        " over 10,000,000 entries.",
        "",
        "| entries | freeze (sort + SHA-256) | random draw | freeze + draw | Loteria Federal draw"
        " | audit encode | audit file | verify (file to verdict) | snapshot read from PostgreSQL |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in results:
        postgres = f"{row['postgres']:.2f} s" if row["postgres"] >= 0 else "not run"
        lines.append(
            f"| {row['entries']:,} | {row['freeze']:.2f} s | {row['draw'] * 1000:.2f} ms"
            f" | {row['freeze'] + row['draw']:.2f} s | {row['loteria'] * 1000:.2f} ms"
            f" | {row['encode']:.2f} s | {row['audit_bytes'] / 1e6:.1f} MB | {row['verify']:.2f} s | {postgres} |"
        )
    lines += [
        "",
        "Freeze sorts the numbers, checks that none repeats and hashes their canonical bytes. The audit encode"
        " (gaps, zlib, base64, JSON model) runs once per draw on the API side and is not part of the target."
        " The PostgreSQL column (with `--postgres`, embedded server) times the snapshot query of bench/draws.py,"
        " which returns every entry as 8 big-endian bytes in table order, plus the freeze of those bytes.",
        END,
    ]
    return "\n".join(lines)


@contextlib.contextmanager
def embedded_database() -> Iterator[str]:
    """Start a migrated embedded PostgreSQL in a temporary folder and stop it on exit."""
    from festival.db import migrate
    from festival.services import EmbeddedPostgres

    with tempfile.TemporaryDirectory() as folder:
        server = EmbeddedPostgres(Path(folder) / "pgdata")
        url = server.start()
        try:
            asyncio.run(migrate(url))
            yield url
        finally:
            server.stop()


def write_section(section: str) -> None:
    results.write_section(BEGIN, END, section, README)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000], help="entry counts")
    parser.add_argument("--repeat", type=int, default=3, help="runs per step; the median is reported")
    parser.add_argument("--postgres", action="store_true", help="also time reading the snapshot from an embedded PostgreSQL")
    parser.add_argument("--no-write", action="store_true", help="print the results without updating bench/README.md")
    args = parser.parse_args()

    rng = np.random.default_rng(20_260_501)
    results = []
    with contextlib.ExitStack() as stack:
        database_url = stack.enter_context(embedded_database()) if args.postgres else None
        for size in args.sizes:
            row = measure(size, args.repeat, rng, database_url)
            print(f"entries={size} " + " ".join(f"{key}={value:.3f}" for key, value in row.items() if key != "entries"))
            results.append(row)

    section = render(results, " ".join(["python bench/draws.py", *sys.argv[1:]]))
    print(section)
    if not args.no_write:
        write_section(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
