"""The service learns online: point 4 of the tour, through HTTP with the learner thread running."""

import random
import time
from typing import Any

import pytest

RANK = "/personalizer/v1.0/rank"
SEGMENTS = ["student", "parent", "retiree", "gamer"]
BEST = {"student": "pizza", "parent": "salad", "retiree": "soup", "gamer": "burger"}
ACTIONS = [{"id": a, "features": [{"food": {"kind": a}}]} for a in ["pizza", "salad", "soup", "burger", "sushi"]]


def wait_until_learned(client: Any, timeout: float = 30) -> dict[str, Any]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = client.get("/personalizer/v1.0/status").json
        if status["events"]["readyToLearn"] == 0 and status["events"]["rewarded"] <= status["events"]["learned"]:
            return status
        time.sleep(0.05)
    raise AssertionError(f"learner did not catch up: {status}")


@pytest.mark.slow
def test_learns_the_best_action_per_context(app: Any, client: Any) -> None:
    rng = random.Random(7)
    for _ in range(400):
        segment = rng.choice(SEGMENTS)
        body = {"contextFeatures": [{"user": {"segment": segment}}], "actions": ACTIONS}
        out = client.post(RANK, json=body).json
        value = 1.0 if out["rewardActionId"] == BEST[segment] else 0.0
        assert client.post(f"/personalizer/v1.0/events/{out['eventId']}/reward", json={"value": value}).status_code == 204
    status = wait_until_learned(client)
    assert status["events"]["learned"] == 400
    hits = 0
    for i in range(200):
        segment = SEGMENTS[i % 4]
        out = client.post(RANK, json={"contextFeatures": [{"user": {"segment": segment}}], "actions": ACTIONS}).json
        hits += out["rewardActionId"] == BEST[segment]
    # exploration is 5%, so a learned policy picks the best action ~96% of the time
    assert hits / 200 >= 0.9, hits
