"""The live screens benchmark at a few screens: every screen connects and gets every number.

No time is asserted; the benchmark itself measures latency.
"""

import argparse

import pytest

from bench.live_screens import run_once


@pytest.mark.parametrize(("transport", "traffic"), [("websockets", "page"), ("tcp", "step")])
async def test_live_screens_small_run(transport: str, traffic: str) -> None:
    args = argparse.Namespace(processes=2, numbers=3, transport=transport, screen_qos=1, connect_seconds=30.0, step_timeout=10.0)

    result = await run_once(5, traffic, args)

    assert result.connected == 5
    assert result.failed == 0
    assert result.numbers == 3
    assert result.missing == 0
    assert result.dropped == 0
    # Once the draw opened, each screen receives the live step of each number and nothing else.
    assert result.received == 5 * 3
