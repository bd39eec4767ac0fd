"""The draw show backs off while the database fails, and polls at its normal pace again after."""

import asyncio

import pytest

from consumers import draw_live


async def test_show_backs_off_then_resets(monkeypatch: pytest.MonkeyPatch) -> None:
    outcomes = [OSError("down")] * 7 + [0, OSError("down")]
    delays: list[float] = []

    async def release_due(pool: object, settings: object) -> int:
        if not outcomes:
            raise asyncio.CancelledError
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def record_sleep(seconds: float) -> None:
        delays.append(seconds)

    monkeypatch.setattr(draw_live, "release_due", release_due)
    monkeypatch.setattr(draw_live.asyncio, "sleep", record_sleep)

    with pytest.raises(asyncio.CancelledError):
        await draw_live.run_show(None, None)  # type: ignore[arg-type]

    assert delays[:7] == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    assert delays[7] == draw_live.POLL_SECONDS
    assert delays[8] == 0.2
