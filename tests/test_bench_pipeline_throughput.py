"""The pipeline throughput benchmark at 200 messages: each arrives, and is applied, exactly once.

No time is asserted; the benchmark itself measures throughput.
"""

from pathlib import Path

from bench.pipeline_throughput import measure_pipeline, measure_raw
from festival.services import Mosquitto
from festival.settings import Settings

COUNT = 200


async def test_raw_receives_each_once(mosquitto: Mosquitto, topic_root: str) -> None:
    result = await measure_raw(mosquitto.service_url, f"{topic_root}/bench/raw", COUNT, 389, timeout=60.0)

    assert result.received == COUNT
    assert result.repeated == 0
    assert result.seconds > 0


async def test_pipeline_applies_each_once(settings: Settings, mosquitto: Mosquitto, tmp_path: Path) -> None:
    result = await measure_pipeline(
        settings, COUNT, "noop", tmp_path, timeout=60.0, broker_log=mosquitto.folder / "mosquitto.log"
    )

    assert result.applied == COUNT
    assert result.pending == 0
    assert result.dead == 0
    assert result.repeated == 0
    assert result.apply_calls == result.applied_total
    assert result.seconds > 0
