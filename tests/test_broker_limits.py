"""The Mosquitto that `festival up`, the tests and the benchmarks start may hold more than 1,024 clients."""

import resource
from collections.abc import Iterator
from pathlib import Path

import pytest

from festival.services import Mosquitto, MosquittoCredentials, free_port

# The soft limit of open files that many login shells and service managers still start with.
COMMON_SOFT_LIMIT = 1024


def soft_open_files(pid: int) -> int:
    """Read the soft "Max open files" limit of process `pid` from /proc/PID/limits."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError(f"no 'Max open files' line in /proc/{pid}/limits")


@pytest.fixture
def low_soft_limit() -> Iterator[int]:
    """Lower this process's soft limit of open files to 1,024 for one test, and yield the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard <= COMMON_SOFT_LIMIT:
        pytest.skip(f"the hard limit of open files is {hard}, so there is nothing to raise")
    resource.setrlimit(resource.RLIMIT_NOFILE, (COMMON_SOFT_LIMIT, hard))
    try:
        yield hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_mosquitto_soft_limit_raised(tmp_path: Path, low_soft_limit: int) -> None:
    broker = Mosquitto(tmp_path / "mosquitto", port=free_port(), ws_port=free_port(), credentials=MosquittoCredentials())
    broker.start()
    try:
        assert broker.pid is not None
        limit = soft_open_files(broker.pid)
    finally:
        broker.stop()

    assert limit == low_soft_limit


def test_mosquitto_limit_leaves_parent(tmp_path: Path, low_soft_limit: int) -> None:
    broker = Mosquitto(tmp_path / "mosquitto", port=free_port(), ws_port=free_port(), credentials=MosquittoCredentials())
    broker.start()
    broker.stop()

    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == COMMON_SOFT_LIMIT
