"""The service learns online: point 4 of the tour, through HTTP with the learner thread running."""

import random
import time
from typing import Any

import pytest

RANK = "/personalizer/v1.0/rank"
SEGMENTS = ["student", "parent", "retiree", "gamer"]
BEST = {"student": "pizza", "parent": "salad", "retiree": "soup", "gamer": "burger"}
ROUNDS = 800
# Fixed, seeded sequences (segments and event ids), so the data never depends on thread timing.
# Sequences 3 and 4 are the ones on which the earlier default (-q :: instead of -q ca) never
# recovered one segment's best dish: its context-only and action-only pair features explained
# the zero rewards away, so SquareCB stopped exploring (docs/learning-policy.md). On sequence 7,
# with every round ranked by the newest model, SquareCB needs more than 400 rounds to find the
# gamers' burger (143/200 hits at 400 rounds, 192/200 at 800); sequences 0-11 all pass at 800.
SEQUENCES = [3, 4, 7]
ACTIONS = [{"id": a, "features": [{"food": {"kind": a}}]} for a in ["pizza", "salad", "soup", "burger", "sushi"]]


def wait_for_model(app: Any, events: int, timeout: float = 10) -> None:
    """Until the model serving Rank calls has learned ``events`` events (the learner raises
    events_learned after its version, and the ranker takes that version after both)."""
    learner, ranker = app.extensions["personalize"].learner, app.extensions["personalize"].ranker
    deadline = time.time() + timeout
    while not (learner.events_learned >= events and ranker.version == learner.version):
        assert time.time() < deadline, "the learner thread did not take the reward"
        time.sleep(0.001)


def wait_until_learned(client: Any, timeout: float = 30) -> dict[str, Any]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = client.get("/personalizer/v1.0/status").json
        if status["events"]["readyToLearn"] == 0 and status["events"]["rewarded"] <= status["events"]["learned"]:
            return status
        time.sleep(0.05)
    raise AssertionError(f"learner did not catch up: {status}")


@pytest.mark.slow
@pytest.mark.parametrize("sequence", SEQUENCES)
def test_learns_the_best_action_per_context(app: Any, client: Any, sequence: int) -> None:
    rng = random.Random(sequence)
    learned = 1
    for i in range(ROUNDS):
        segment = rng.choice(SEGMENTS)
        body = {"contextFeatures": [{"user": {"segment": segment}}], "actions": ACTIONS, "eventId": f"learn-{sequence}-{i}"}
        out = client.post(RANK, json=body).json
        value = 1.0 if out["rewardActionId"] == BEST[segment] else 0.0
        assert client.post(f"/personalizer/v1.0/events/{out['eventId']}/reward", json={"value": value}).status_code == 204
        # The learner thread takes it within learner_interval; ranking on before then would make the
        # data depend on thread timing (and the test flaky), so each round sees the newest model.
        wait_for_model(app, learned)
        learned += 1
    status = wait_until_learned(client)
    assert status["events"]["learned"] == ROUNDS
    hits = 0
    for i in range(200):
        segment = SEGMENTS[i % 4]
        out = client.post(RANK, json={"contextFeatures": [{"user": {"segment": segment}}], "actions": ACTIONS, "eventId": f"check-{sequence}-{i}"}).json
        hits += out["rewardActionId"] == BEST[segment]
    # SquareCB plus the 2 % uniform floor: a learned policy picks the best action ~95 % of the time
    assert hits / 200 >= 0.9, hits
