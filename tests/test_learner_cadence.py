"""The learner thread's snapshot cadence: a trickle of rewards is learned at once, a flood in batches."""

from __future__ import annotations

from typing import Any

from personalize import learner as learner_module
from personalize.config import load_settings
from personalize.learner import Learner


class _Stop:
    def __init__(self, steps: int) -> None:
        self.waits: list[float] = []
        self.steps = steps

    def is_set(self) -> bool:
        return len(self.waits) >= self.steps

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        return self.is_set()


def test_busy_steps_wait_longer_and_quiet_ones_do_not(monkeypatch: Any) -> None:
    settings = load_settings({"learner_interval": 0.01, "learner_batch": 100}, env={})
    learned = iter([learner_module.BUSY_EVENTS, 1, 0, learner_module.BUSY_EVENTS - 1, 100, 3])
    learner = Learner(settings, db=None)  # type: ignore[arg-type]  # step() is replaced below
    monkeypatch.setattr(learner, "step", lambda: next(learned))
    stop = _Stop(steps=5)
    learner._stop = stop  # type: ignore[assignment]
    learner.run()
    # full batch (100): no wait at all, straight on to the next step
    assert stop.waits == [learner_module.BUSY_INTERVAL, 0.01, 0.01, 0.01, 0.01]
