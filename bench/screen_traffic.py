"""The messages of a benchmark draw, built with the platform's own public models so sizes are real."""

import random
from datetime import UTC, datetime, timedelta
from uuid import UUID

from broker import topics
from schemas.live import CurrentDraw, DrawState, LivePrize, LiveStep

TOPIC_ROOT = "festival/v1"
# The draw opens with its `started` step (sequence 1), so drawn number n has sequence n + 1.
SEQUENCE_OFFSET = 1


class DrawScript:
    """The topics a live page follows and the messages published when the draw opens and per number.

    `subscriptions` is what the page subscribes to, in its order. With `with_state` (the draws
    consumer's traffic) the opening is the retained state, the retained `draws/current` and the
    `started` step, and each number is the live step and the retained state, which grows with
    every number. `draws/current` changes only with the draw's status, so no number repeats it.
    Without `with_state` every message is a live step alone.

    `leave_index` is the subscription a screen leaves after its first live step, as the page leaves
    the state topic once the steps carry the draw (None: the screen keeps every subscription).
    `per_step` contains the indices of the subscriptions that deliver one message per number: the
    live topic alone in both cases, because the state reaches no screen that has left it.
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
        self.leave_index = 1 if with_state else None
        self.per_step = (self.live_index,)
        self._scheduled_at = datetime.now(UTC)
        self._steps: list[LiveStep] = []
        self._random = random.Random(str(draw_id))

    def opening(self) -> list[tuple[str, bytes, bool]]:
        """Return (topic, payload, retain) of the messages that open the draw, to publish in order.

        The state and `draws/current` come before the step here, so a screen that has the step has
        every opening message too.
        """
        now = datetime.now(UTC)
        step = LiveStep(draw_id=self.draw_id, sequence=SEQUENCE_OFFSET, kind="started", at=now)
        messages = []
        if self.with_state:
            current = CurrentDraw(draw_id=self.draw_id, status="drawing", scheduled_at=self._scheduled_at, updated_at=now)
            messages.append((self.state_topic, self._state(SEQUENCE_OFFSET, now).model_dump_json().encode(), True))
            messages.append((self.current_topic, current.model_dump_json().encode(), True))
        messages.append((self.live_topic, step.model_dump_json().encode(), False))
        return messages

    def messages(self, number: int) -> list[tuple[str, bytes, bool]]:
        """Return (topic, payload, retain) of every message published for drawn number `number`."""
        now = datetime.now(UTC)
        lucky = self._random.randrange(1_000_000)
        step = LiveStep(
            draw_id=self.draw_id, sequence=number + SEQUENCE_OFFSET, kind="number_drawn", at=now,
            position=1, number=lucky, number_display=f"{lucky:06d}",
        )
        self._steps.append(step)
        messages = [(self.live_topic, step.model_dump_json().encode(), False)]
        if self.with_state:
            messages.append((self.state_topic, self._state(step.sequence, now).model_dump_json().encode(), True))
        return messages

    def _state(self, sequence: int, now: datetime) -> DrawState:
        return DrawState(
            draw_id=self.draw_id, title="Festival de Prêmios - sorteio de benchmark", status="drawing",
            sequence=sequence, updated_at=now, scheduled_at=self._scheduled_at,
            cutoff_at=self._scheduled_at - timedelta(minutes=10),
            prizes=[LivePrize(position=1, description="Carro 0 km"), LivePrize(position=2, description="Moto 0 km")],
            commitment="0" * 64, snapshot_sha256="0" * 64, entry_count=10_000_000,
            numbers_drawn=list(self._steps), verify_url=f"/v1/draws/{self.draw_id}/audit",
        )
