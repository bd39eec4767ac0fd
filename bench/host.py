"""Facts about the machine and its processes that several benchmarks record beside their figures."""

import os
import platform
import subprocess
from pathlib import Path

import psutil


def cpu_model() -> str:
    """Return the CPU's model name from /proc/cpuinfo, or the platform's processor name if it has none."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return cpu


def mosquitto_version() -> str:
    """Return the installed Debian package version of Mosquitto, or "unknown"."""
    try:
        output = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "mosquitto"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return "unknown"
    return output.strip() or "unknown"


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """Return the CPU time (user + system) each named process and its children have used so far.

    A process that exited before the call counts as zero, and an exited child is not counted. The
    calling process counts alone, because every other process the benchmarks start is its child.
    """
    used: dict[str, float] = {}
    for name, pid in pids.items():
        total = 0.0
        try:
            process = psutil.Process(pid)
            members = [process] if pid == os.getpid() else [process, *process.children(recursive=True)]
        except psutil.NoSuchProcess:
            members = []
        for member in members:
            try:
                times = member.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        used[name] = total
    return used
