"""The parent's side of the receiver processes: start them, follow their reports, stop them by PID."""

import asyncio
import multiprocessing
import sys
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from bench.screen_client import ScreenSettings
from bench.screen_worker import WorkerPlan, run_worker


class PoolError(Exception):
    """A receiver process exited or stopped reporting; the message names it."""


@dataclass
class WorkerState:
    process: BaseProcess
    pipe: Connection
    connected: int | None = None
    failures: int = 0
    first_error: str = ""
    opened: bool = False
    done: int = 0
    times: list[array] | None = None
    dropped: int = 0
    received: int = 0
    closed: bool = False  # the pipe reached EOF: the process exited
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class ScreenPool:
    """Receiver processes that together hold `screens` screens, split as evenly as possible."""

    def __init__(
        self,
        settings: ScreenSettings,
        *,
        screens: int,
        processes: int,
        numbers: int,
        per_step: tuple[int, ...],
        connect_deadline: float,
    ) -> None:
        self.numbers = numbers
        context = multiprocessing.get_context("spawn")
        self.workers: list[WorkerState] = []
        self._child_ends: list[Connection] = []
        for index in range(processes):
            share = screens // processes + (1 if index < screens % processes else 0)
            plan = WorkerPlan(settings, share, numbers, per_step, connect_deadline, name=f"receiver-{index}")
            parent_end, child_end = context.Pipe()
            process = context.Process(target=run_worker, args=(plan, child_end), name=plan.name, daemon=True)
            self.workers.append(WorkerState(process, parent_end))
            self._child_ends.append(child_end)

    @property
    def pids(self) -> list[int]:
        return [worker.process.pid for worker in self.workers if worker.process.pid is not None]

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        for worker, child_end in zip(self.workers, self._child_ends, strict=True):
            worker.process.start()
            # The child owns its end now; closing ours lets recv() see EOF when the child dies.
            child_end.close()
            loop.add_reader(worker.pipe.fileno(), self._read, worker)

    async def wait_connected(self, timeout: float) -> tuple[int, int, str]:
        """Wait until every process reported its connection phase; return connected, failed, first error."""
        await self._wait(lambda worker: worker.connected is not None, timeout, "connection report")
        errors = [worker.first_error for worker in self.workers if worker.first_error]
        connected = sum(worker.connected or 0 for worker in self.workers)
        return connected, sum(worker.failures for worker in self.workers), errors[0] if errors else ""

    async def wait_opened(self, timeout: float) -> bool:
        """Wait until every screen has the draw's opening step; False when `timeout` passed first."""
        try:
            await self._wait(lambda worker: worker.opened, timeout, "opening")
        except TimeoutError:
            return False
        return True

    async def wait_done(self, number: int, timeout: float) -> bool:
        """Wait until every screen has every message of step `number`; False when `timeout` passed first."""
        try:
            await self._wait(lambda worker: worker.done >= number, timeout, f"step {number}")
        except TimeoutError:
            return False
        return True

    async def collect(self, timeout: float) -> tuple[list[list[array]], int, int]:
        """Ask every process to stop; return each one's arrival times, the dropped screens and the
        messages received after the opening, both summed over the processes."""
        for worker in self.workers:
            worker.pipe.send(("stop",))
        await self._wait(lambda worker: worker.times is not None, timeout, "results")
        times = [worker.times or [] for worker in self.workers]
        return times, sum(worker.dropped for worker in self.workers), sum(worker.received for worker in self.workers)

    def stop(self, timeout: float = 10.0) -> None:
        """Wait for every process to exit, then terminate and at last kill the ones left, by PID."""
        loop = asyncio.get_running_loop()
        for worker in self.workers:
            if not worker.closed:
                loop.remove_reader(worker.pipe.fileno())
        for worker in self.workers:
            if worker.process.pid is not None:
                worker.process.join(timeout)
            if worker.process.is_alive():
                print(f"receiver still running pid={worker.process.pid}; terminating it", file=sys.stderr)
                worker.process.terminate()
                worker.process.join(5)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(5)
            worker.pipe.close()

    async def _wait(self, condition: Callable[[WorkerState], bool], timeout: float, report: str) -> None:
        async with asyncio.timeout(timeout):
            for worker in self.workers:
                while not condition(worker):
                    if worker.closed:
                        raise PoolError(f"{worker.process.name} pid={worker.process.pid} exited before its {report}")
                    worker.changed.clear()
                    await worker.changed.wait()

    def _read(self, worker: WorkerState) -> None:
        try:
            message = worker.pipe.recv()
        except EOFError:
            asyncio.get_running_loop().remove_reader(worker.pipe.fileno())
            worker.closed = True
            worker.changed.set()
            return

        kind = message[0]
        if kind == "connected":
            _, worker.connected, worker.failures, worker.first_error = message
        elif kind == "opened":
            worker.opened = True
        elif kind == "done":
            worker.done = message[1]
        elif kind == "results":
            worker.times = [array("d", chunk) for chunk in message[1]]
            worker.dropped = message[2]
            worker.received = message[3]
        worker.changed.set()
