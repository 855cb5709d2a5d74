"""A service with a simulated log (tests/evaluation/simlog.py), learned by an inline learner on a fake clock."""

from __future__ import annotations

from typing import Any, Callable

import pytest

from tests.conftest import FakeClock
from tests.evaluation.simlog import simulate

LOG_EVENTS = 1200


@pytest.fixture
def logged_app(make_app: Callable[..., Any], database_url: str) -> Any:
    """An app (no background threads) whose store holds LOG_EVENTS learned events of the simulated world."""
    clock = FakeClock()
    app = make_app(clock=clock, start=False, database_url=database_url, learner="inline", learn_every=50,
                   reward_wait_time=5.0, job_cpu_share=1.0)
    client = app.test_client()

    def rank(body: dict[str, Any]) -> dict[str, Any]:
        response = client.post("/personalizer/v1.0/rank", json=body)
        assert response.status_code == 201, response.json
        return response.json

    def reward(event_id: str, value: float) -> None:
        assert client.post(f"/personalizer/v1.0/events/{event_id}/reward", json={"value": value}).status_code == 204

    simulate(rank, reward, LOG_EVENTS, tick=lambda: clock.advance(1.0))
    clock.advance(100)
    app.extensions["personalize"].learner.step()
    app.clock = clock
    return app
