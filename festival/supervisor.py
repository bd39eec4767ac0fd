"""Child processes of `festival up`: start each component, restart it when it exits, stop them all.

Each child runs in its own session, so a Ctrl-C in the terminal reaches only the launcher, which
then stops the children in order. Linux also sends each child SIGTERM when the launcher dies.
"""

import asyncio
import importlib.util
import logging
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from festival.services import parent_death_signal

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Component:
    """One `festival` subcommand that the launcher runs as a child process."""

    name: str
    args: tuple[str, ...]
    # Module that the subcommand imports; while it does not exist, the component is skipped.
    module: str
    # Variables set for this child only, over the supervisor's environment.
    env: tuple[tuple[str, str], ...] = ()

    def is_available(self) -> bool:
        try:
            return importlib.util.find_spec(self.module) is not None
        except ModuleNotFoundError:
            return False


@dataclass(frozen=True)
class Backoff:
    """Delays between restarts: doubling from `initial` up to `maximum` seconds.

    A child that ran for at least `stable_after` seconds before it exited starts again at `initial`.
    """

    initial: float = 1.0
    maximum: float = 30.0
    stable_after: float = 60.0

    def next_delay(self, previous: float, ran_for: float) -> float:
        if ran_for >= self.stable_after or previous <= 0:
            return self.initial
        return min(previous * 2, self.maximum)


class Supervisor:
    """Runs components as child processes with environment `env` until `stop` is called."""

    def __init__(self, env: Mapping[str, str], *, backoff: Backoff = Backoff(), stop_timeout: float = 10.0) -> None:
        self.env = dict(env)
        self.backoff = backoff
        self.stop_timeout = stop_timeout
        self.processes: dict[str, asyncio.subprocess.Process] = {}
        self.exits: Counter[str] = Counter()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stopping = False

    def start(self, component: Component) -> bool:
        """Start supervising `component`; return False, with a warning, when its module does not exist yet."""
        if not component.is_available():
            logger.warning("component skipped name=%s reason=module %s not found", component.name, component.module)
            return False
        task = asyncio.create_task(self._supervise(component), name=f"supervise-{component.name}")
        self._tasks[component.name] = task
        return True

    async def _spawn(self, component: Component) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "festival.cli",
            *component.args,
            env={**self.env, **dict(component.env)},
            stdin=asyncio.subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=parent_death_signal,
        )
        self.processes[component.name] = process
        logger.info("component started name=%s pid=%s", component.name, process.pid)
        return process

    async def _supervise(self, component: Component) -> None:
        delay = 0.0
        while not self._stopping:
            started_at = time.monotonic()
            process = await self._spawn(component)
            code = await process.wait()
            if self._stopping:
                return

            self.exits[component.name] += 1
            ran_for = time.monotonic() - started_at
            delay = self.backoff.next_delay(delay, ran_for)
            logger.error(
                "component exited name=%s pid=%s exit_code=%s ran_for=%.1fs restart_in=%.1fs",
                component.name, process.pid, code, ran_for, delay,
            )
            await asyncio.sleep(delay)

    async def stop(self) -> None:
        """Stop every child: SIGTERM to its process group, then SIGKILL after `stop_timeout` seconds."""
        self._stopping = True
        for task in self._tasks.values():
            task.cancel()

        running = {name: process for name, process in self.processes.items() if process.returncode is None}
        for name, process in running.items():
            _signal_group(process.pid, signal.SIGTERM)
            logger.info("component stopping name=%s pid=%s", name, process.pid)

        waits = [asyncio.create_task(process.wait(), name=f"wait-{name}") for name, process in running.items()]
        if waits:
            _, pending = await asyncio.wait(waits, timeout=self.stop_timeout)
            for name, process in running.items():
                if process.returncode is None:
                    logger.warning("component killed name=%s pid=%s after=%.0fs", name, process.pid, self.stop_timeout)
                    _signal_group(process.pid, signal.SIGKILL)
            if pending:
                await asyncio.wait(pending, timeout=5.0)

        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        for name, process in running.items():
            logger.info("component stopped name=%s pid=%s exit_code=%s", name, process.pid, process.returncode)


def _signal_group(pid: int, signum: signal.Signals) -> None:
    """Send `signum` to the child's process group, which also reaches any process it started."""
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        pass
