"""The machine facts that the benchmarks record beside their figures."""

import asyncio
import os
import sys

import psutil

from bench.host import cpu_seconds


def test_cpu_seconds_exited_process() -> None:
    process = psutil.Popen([sys.executable, "-c", "pass"])
    process.wait(10)

    used = cpu_seconds({"exited": process.pid})

    assert used == {"exited": 0.0}


async def test_cpu_seconds_counts_children() -> None:
    # The parent only waits, so nearly all of its total is the busy child's.
    busy = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\nprint(flush=True)\ntime.sleep(30)"
    command = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {busy!r}])"
    parent = await asyncio.create_subprocess_exec(sys.executable, "-c", command, stdout=asyncio.subprocess.PIPE)
    try:
        assert parent.stdout is not None
        await asyncio.wait_for(parent.stdout.readline(), 30)

        used = cpu_seconds({"parent": parent.pid, "self": os.getpid()})
        own = psutil.Process().cpu_times()
    finally:
        for child in psutil.Process(parent.pid).children(recursive=True):
            child.kill()
        parent.kill()
        await parent.wait()

    assert used["parent"] >= 0.3
    # The calling process counts alone, so the busy grandchild's 0.3 s is not in its total.
    assert used["self"] <= own.user + own.system
