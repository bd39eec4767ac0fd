"""wrk runs for the ingest benchmark: a Lua script over pre-built requests, and the parsed results.

wrk (Debian package 4.1) keeps a fixed number of connections, each sending its next request as
soon as the previous response arrives. With a rate, the Lua `delay()` hook spaces the requests of
each wrk thread on a fixed schedule read from the monotonic clock, so the load stays at that rate
while the receiver keeps up. Latency is measured from the moment wrk sends a request, so a
receiver that falls behind the schedule shows a lower p99 than an open-loop client would measure.
"""

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

THREADS = 2
CONNECTIONS = 32

# Each wrk thread has its own Lua state: thread i sends requests i, i + threads, i + 2 × threads ...
# so no two threads send the same request.
LUA_TEMPLATE = """
local threads = 0
setup = function(thread)
  thread:set("offset", threads)
  threads = threads + 1
end
local requests = dofile("{data}")
local index = 0
request = function()
  local r = requests[(offset + index * {threads}) % #requests + 1]
  index = index + 1
  return wrk.format("POST", "{path}", r[1], r[2])
end
"""

# wrk truncates the delay to whole milliseconds. The schedule still averages to the rate, because
# each call books the slot after the previous one, not one counted from the current time.
LUA_PACING = """
local ffi = require("ffi")
ffi.cdef[[
typedef struct {{ long tv_sec; long tv_nsec; }} bench_timespec;
int clock_gettime(int clock_id, bench_timespec *time);
]]
local CLOCK_MONOTONIC = 1
local clock = ffi.new("bench_timespec")
local function now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, clock)
  return tonumber(clock.tv_sec) * 1000 + tonumber(clock.tv_nsec) / 1e6
end
local interval_ms = {interval_ms}
local next_ms = nil
delay = function()
  local now = now_ms()
  if next_ms == nil then next_ms = now end
  next_ms = next_ms + interval_ms
  return math.max(0, next_ms - now)
end
"""


@dataclass(frozen=True)
class WrkResult:
    rate: float
    p99_ms: float
    non_2xx: int
    requests: int


def write_script(folder: Path, requests: list[tuple[dict[str, str], str]], path: str, rate: float = 0) -> Path:
    """Write the requests as a Lua table and the script that sends them; pace them when `rate` > 0."""

    def quote(text: str) -> str:
        return "[==[" + text + "]==]"

    lines = ["return {"]
    for headers, body in requests:
        header_table = ", ".join(f"[ {quote(k)} ] = {quote(v)}" for k, v in headers.items())
        lines.append(f"{{ {{{header_table}}}, {quote(body)} }},")
    lines.append("}")
    data = folder / "requests.lua"
    data.write_text("\n".join(lines))

    script = LUA_TEMPLATE.format(data=data, threads=THREADS, path=path)
    if rate > 0:
        script += LUA_PACING.format(interval_ms=THREADS * 1000 / rate)
    script_path = folder / "script.lua"
    script_path.write_text(script)
    return script_path


def run_wrk(port: int, script: Path, seconds: int) -> WrkResult:
    """Run wrk against 127.0.0.1:`port` for `seconds` and parse its report."""
    output = subprocess.run(
        ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "-s", str(script),
         f"http://127.0.0.1:{port}"],
        capture_output=True, text=True, check=True,
    ).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    if rate is None or total is None:
        raise RuntimeError(f"wrk output has no request rate or count:\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", output)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    return WrkResult(
        rate=float(rate.group(1)),
        p99_ms=float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan"),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        requests=int(total.group(1)),
    )
