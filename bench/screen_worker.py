"""One receiver process of the live screens benchmark: keeps a share of the screens on one event loop.

The parent starts it with `multiprocessing` (spawn) and talks to it over a pipe:

- worker -> parent `("connected", count, failures, first_error)` once its screens are connected
  or its connection deadline passed;
- worker -> parent `("opened",)` once every one of its screens has the draw's opening step (step 0)
  and left the topic it leaves after it;
- worker -> parent `("done", n)` each time every one of its screens has every message of step n;
- parent -> worker `("stop",)`, to which the worker replies with
  `("results", times, dropped, received)` and exits, where `dropped` counts the screens whose
  connection closed after they connected and `received` the messages its screens received after
  the opening, on every topic.
  `times[n - 1]` holds the bytes of an `array("d")` of the monotonic arrival times of step n,
  one per screen, NaN where a screen never received it.
"""

import asyncio
import math
import os
import time
import uuid
from array import array
from dataclasses import dataclass
from multiprocessing.connection import Connection

import uvloop

from bench.screen_client import KEEPALIVE_SECONDS, Screen, ScreenError, ScreenSettings
from festival.services import parent_death_signal, raise_open_files_limit

# Handshakes in flight at once per process, so the broker receives a steady stream, not a burst.
CONNECT_CONCURRENCY = 64
CONNECT_TIMEOUT_SECONDS = 10.0
# A worker stops connecting after this many failed screens, because further attempts would meet
# the same limit or error.
FAILURE_LIMIT = 20


@dataclass(frozen=True)
class WorkerPlan:
    settings: ScreenSettings
    screens: int
    numbers: int
    per_step: tuple[int, ...]  # indices of the topics that receive one message per step
    connect_deadline: float  # time.monotonic() value after which no new connection starts
    name: str


class Worker:
    def __init__(self, plan: WorkerPlan, pipe: Connection) -> None:
        self.plan = plan
        self.pipe = pipe
        self.screens: list[Screen] = []
        self.members: set[Screen] = set()
        self.failures = 0
        self.first_error = ""
        self.measuring = False
        # done[n] counts the screens that have every message of step n, for n in 1..numbers.
        self.done = [0] * (plan.numbers + 1)
        self.reported = 0
        self.opened = 0
        self.reported_opened = False
        self.dropped: set[Screen] = set()
        self.stopped = asyncio.Event()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(self.pipe.fileno(), self._read_command)
        # uvloop makes a watched descriptor non-blocking, and then a send larger than the pipe's
        # buffer (the results) fails with EAGAIN; the pipe carries only whole, small commands inbound.
        os.set_blocking(self.pipe.fileno(), True)
        pinger = asyncio.create_task(self._keep_alive(), name=f"{self.plan.name}-keep-alive")
        try:
            await self._connect_all()
            self.measuring = True
            self.pipe.send(("connected", len(self.screens), self.failures, self.first_error))
            self._report_done()
            await self.stopped.wait()
        finally:
            pinger.cancel()
            loop.remove_reader(self.pipe.fileno())
        self.pipe.send(("results", self._arrival_times(), len(self.dropped), self._received_after_opening()))
        await self._disconnect_all()

    async def _connect_all(self) -> None:
        remaining = self.plan.screens
        pending: set[asyncio.Task[None]] = set()
        while True:
            while remaining and len(pending) < CONNECT_CONCURRENCY and self._may_connect():
                remaining -= 1
                pending.add(asyncio.create_task(self._connect_one(), name=f"{self.plan.name}-connect"))
            if not pending:
                return
            _finished, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)

    def _may_connect(self) -> bool:
        return time.monotonic() < self.plan.connect_deadline and self.failures < FAILURE_LIMIT

    async def _disconnect_all(self) -> None:
        for screen in self.screens:
            screen.disconnect()
        # The transports send DISCONNECT and close on the next iterations of the loop.
        deadline = time.monotonic() + 5
        while any(not screen.closed for screen in self.screens) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    async def _connect_one(self) -> None:
        loop = asyncio.get_running_loop()
        settings = self.plan.settings
        screen = Screen(settings, f"bench-{uuid.uuid4().hex[:12]}", self._on_message)
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                await loop.create_connection(lambda: screen, settings.host, settings.port)
                await screen.ready
        except (OSError, TimeoutError, ScreenError) as error:
            screen.abort()
            self.failures += 1
            self.first_error = self.first_error or f"{type(error).__name__}: {error}"
            return
        self.screens.append(screen)
        self.members.add(screen)

    def _on_message(self, screen: Screen) -> None:
        if not self.measuring:
            return
        if screen.closed and screen in self.members:
            self.dropped.add(screen)
        if screen.opened_with < 0 and screen.opened:
            # The opening step comes last in the opening, so every other opening message is counted.
            screen.opened_with = sum(screen.counts)
            self.opened += 1

        # A screen completes step n once live step n and n messages on each other per-step topic arrived.
        live = self.plan.settings.live_index
        others = min((screen.counts[index] for index in self.plan.per_step if index != live), default=self.plan.numbers)
        limit = min(others, self.plan.numbers)
        while screen.completed < limit and screen.completed + 1 in screen.live_times:
            screen.completed += 1
            self.done[screen.completed] += 1
        self._report_done()

    def _report_done(self) -> None:
        # A screen the broker dropped would hold every later step back until the parent's timeout.
        open_screens = len(self.screens) - len(self.dropped)
        if not self.reported_opened and self.opened >= open_screens:
            self.reported_opened = True
            self.pipe.send(("opened",))
        while self.reported < self.plan.numbers and self.done[self.reported + 1] >= open_screens:
            self.reported += 1
            self.pipe.send(("done", self.reported))

    async def _keep_alive(self) -> None:
        # mqtt.js sends PINGREQ when nothing was sent for a keep-alive period; the broker closes a
        # connection after 1.5 periods of silence.
        while True:
            await asyncio.sleep(KEEPALIVE_SECONDS / 3)
            idle_since = time.monotonic() - KEEPALIVE_SECONDS / 2
            for screen in self.screens:
                if not screen.closed and screen.last_sent < idle_since:
                    screen.ping()

    def _read_command(self) -> None:
        try:
            command = self.pipe.recv()
        except EOFError:
            command = ("stop",)
        if command[0] == "stop":
            self.stopped.set()

    def _received_after_opening(self) -> int:
        return sum(sum(screen.counts) - screen.opened_with for screen in self.screens if screen.opened_with >= 0)

    def _arrival_times(self) -> list[bytes]:
        return [
            array("d", (screen.live_times.get(number, math.nan) for screen in self.screens)).tobytes()
            for number in range(1, self.plan.numbers + 1)
        ]


def run_worker(plan: WorkerPlan, pipe: Connection) -> None:
    """Entry point of a receiver process."""
    parent_death_signal()
    raise_open_files_limit()
    uvloop.run(Worker(plan, pipe).run())
