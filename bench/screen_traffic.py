"""The messages of a benchmark draw, built with the platform's own public models so sizes are real."""

import random
from datetime import UTC, datetime, timedelta
from uuid import UUID

from broker import topics
from schemas.live import CurrentDraw, DrawState, LivePrize, LiveStep

TOPIC_ROOT = "festival/v1"


class DrawScript:
    """The topics a live page follows and the messages published for each drawn number.

    `subscriptions` is what the page subscribes to, in its order. `per_step` contains the indices of
    the subscriptions that receive one message per number: all three with `with_state` (the draws
    consumer's traffic), the live topic alone without it.
    """

    def __init__(self, draw_id: UUID, numbers: int, *, with_state: bool) -> None:
        self.draw_id = draw_id
        self.numbers = numbers
        self.with_state = with_state
        self.live_topic = topics.absolute(TOPIC_ROOT, topics.draw_live(str(draw_id)))
        self.state_topic = topics.absolute(TOPIC_ROOT, topics.draw_state(str(draw_id)))
        self.current_topic = topics.absolute(TOPIC_ROOT, topics.DRAWS_CURRENT)
        self.subscriptions = (self.current_topic, self.state_topic, self.live_topic)
        self.live_index = 2
        self.per_step = (0, 1, 2) if with_state else (2,)
        self._scheduled_at = datetime.now(UTC)
        self._steps: list[LiveStep] = []
        self._random = random.Random(str(draw_id))

    def messages(self, number: int) -> list[tuple[str, bytes, bool]]:
        """Return (topic, payload, retain) of every message published for drawn number `number`."""
        now = datetime.now(UTC)
        lucky = self._random.randrange(1_000_000)
        step = LiveStep(
            draw_id=self.draw_id, sequence=number, kind="number_drawn", at=now,
            position=1, number=lucky, number_display=f"{lucky:06d}",
        )
        self._steps.append(step)
        messages = [(self.live_topic, step.model_dump_json().encode(), False)]
        if not self.with_state:
            return messages

        state = DrawState(
            draw_id=self.draw_id, title="Festival de Prêmios - sorteio de benchmark", status="drawing",
            sequence=number, updated_at=now, scheduled_at=self._scheduled_at,
            cutoff_at=self._scheduled_at - timedelta(minutes=10),
            prizes=[LivePrize(position=1, description="Carro 0 km"), LivePrize(position=2, description="Moto 0 km")],
            commitment="0" * 64, snapshot_sha256="0" * 64, entry_count=10_000_000,
            numbers_drawn=list(self._steps), verify_url=f"/v1/draws/{self.draw_id}/audit",
        )
        current = CurrentDraw(draw_id=self.draw_id, status="drawing", scheduled_at=self._scheduled_at, updated_at=now)
        messages.append((self.state_topic, state.model_dump_json().encode(), True))
        messages.append((self.current_topic, current.model_dump_json().encode(), True))
        return messages
