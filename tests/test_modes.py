"""Learning modes (personalize/modes.py): Online, Apprentice and LoggingOnly through the service."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import given, strategies as st

from personalize import modes, store
from personalize.dsjson import event_line
from personalize.models import Event
from personalize.ranker import Decision

V1 = "/personalizer/v1.0"
CONFIG_URL = "/personalizer/configurations/service"
KINDS = ("news", "sports", "science", "music")


def _set_mode(client: Any, mode: str) -> None:
    body = client.get(CONFIG_URL).json
    answer = client.put(CONFIG_URL, json={**body, "learningMode": mode})
    assert answer.status_code == 200, answer.json


def _actions(order: list[str]) -> list[dict[str, Any]]:
    return [{"id": a, "features": [{"item": {"kind": a}}]} for a in order]


@given(st.lists(st.integers(0, 20), min_size=1, max_size=20, unique=True).flatmap(
    lambda ranking: st.tuples(st.just(ranking), st.sampled_from(ranking))))
def test_baseline_decision_serves_the_baseline_with_probability_one(case: tuple[list[int], int]) -> None:
    ranking, baseline = case
    model = Decision(ranking=ranking, probabilities=[1 / len(ranking)] * len(ranking), model_version=7)
    served = modes.baseline_decision(model, baseline)
    assert served.chosen == baseline and served.probability == 1.0
    assert sorted(served.ranking) == sorted(ranking) and sum(served.probabilities) == 1.0
    assert served.model_version == 7


def test_mode_rules() -> None:
    assert not modes.serves_baseline("Online")
    assert modes.serves_baseline("Apprentice") and modes.serves_baseline("LoggingOnly")
    assert modes.learns(None) and modes.learns("Apprentice") and not modes.learns("LoggingOnly")


@pytest.mark.parametrize("mode", ["Apprentice", "LoggingOnly"])
def test_baseline_modes_always_answer_the_first_kept_action_and_log_it_with_probability_one(
        make_app: Any, database_url: str, mode: str) -> None:
    app = make_app(database_url=database_url, start=False, learning_mode=mode)
    client = app.test_client()
    rng = random.Random(3)
    for i in range(60):
        order = rng.sample(KINDS, len(KINDS))
        excluded = order[:rng.randint(0, 2)]
        body = {"actions": _actions(order), "eventId": f"{mode}-{i}", "excludedActions": excluded,
                "contextFeatures": [{"user": {"n": i % 5}}]}
        answer = client.post(f"{V1}/rank", json=body).json
        baseline = order[len(excluded)]
        assert answer["rewardActionId"] == baseline
        assert answer["ranking"][0] == {"id": baseline, "probability": 1.0}
        assert all(entry["probability"] == 0.0 for entry in answer["ranking"][1:])
        assert {entry["id"] for entry in answer["ranking"]} == set(order) - set(excluded)
    with app.extensions["personalize"].db.read() as session:
        events = session.query(Event).all()
        assert len(events) == 60
        for event in events:
            assert event.learning_mode == mode
            assert event.chosen_index == 0 and event.probability == 1.0
            assert event.model_index is not None and 0 <= event.model_index < len(event.action_ids)
            line = json.loads(event_line(event, 1.0))
            assert line["_label_probability"] == 1.0 and line["p"][0] == 1.0 and line["_labelIndex"] == 0


def test_online_events_stay_as_before(make_app: Any) -> None:
    app = make_app(start=False)
    client = app.test_client()
    client.post(f"{V1}/rank", json={"actions": _actions(list(KINDS)), "eventId": "o1"})
    with app.extensions["personalize"].db.read() as session:
        event = session.query(Event).filter_by(event_id="o1").one()
        assert event.learning_mode is None and event.model_index is None


def _apprentice_round(client: Any, rng: random.Random, i: int, best: dict[int, str]) -> None:
    """A user segment whose best action the application knows and puts first: the baseline is optimal."""
    segment = i % len(best)
    order = [best[segment]] + rng.sample([k for k in KINDS if k != best[segment]], len(KINDS) - 1)
    answer = client.post(f"{V1}/rank", json={"actions": _actions(order), "eventId": f"a-{i}",
                                             "contextFeatures": [{"user": {"segment": str(segment)}}]}).json
    assert answer["rewardActionId"] == best[segment]
    assert client.post(f"{V1}/events/a-{i}/reward", json={"value": 1.0}).status_code == 204


def _agreement(app: Any, first: int, last: int) -> float:
    with app.extensions["personalize"].db.read() as session:
        rows = [e for e in session.query(Event).order_by(Event.seq).all()[first:last]]
    return sum(e.model_index == e.chosen_index for e in rows) / len(rows)


def test_apprentice_agreement_rises_where_the_baseline_is_optimal(make_app: Any, database_url: str, clock: Any) -> None:
    # learn_every=40: the first 40 events are ranked by the untrained model, as a learner behind a wait would be
    app = make_app(database_url=database_url, clock=clock, start=False, learner="inline", learning_mode="Apprentice",
                   learn_every=40, enrich_context=False)
    client = app.test_client()
    rng = random.Random(11)
    best = {0: "news", 1: "sports", 2: "science"}
    for i in range(400):
        _apprentice_round(client, rng, i, best)
        clock.advance(0.01)
    early, late = _agreement(app, 0, 40), _agreement(app, 300, 400)
    assert early < 0.5, early  # an untrained model agrees by chance (about 1/4)
    assert late > 0.85, late
    assert late > early + 0.3
    status = client.get(f"{V1}/status").json
    apprentice = status["apprentice"]
    assert apprentice["events"] == 400
    assert apprentice["baselineReward"] == 1.0
    assert apprentice["agreement"] == pytest.approx(_agreement(app, 0, 400))
    assert apprentice["lastBatch"]["agreement"] == pytest.approx(_agreement(app, 300, 400))
    low, high = apprentice["modelReward"]["lower"], apprentice["modelReward"]["upper"]
    assert low == pytest.approx(apprentice["agreement"] - (1 - apprentice["agreement"]))  # disagreements at reward_min
    assert high == pytest.approx(1.0)
    assert status["model"]["version"] > 0  # Apprentice learns
    config = client.get(CONFIG_URL).json["latestApprenticeModeMetrics"]
    assert config["numberOfEvents"] == 400 and config["sumOfRewards"] == 400.0
    assert config["numberOfImitatedEvents"] == apprentice["agreedEvents"]
    assert config["lastBatchMetrics"]["numberOfEvents"] == 100
    # Switched to Online, the model serves what it learned: the baseline, mostly
    _set_mode(client, "Online")
    served = [client.post(f"{V1}/rank", json={"actions": _actions(rng.sample(KINDS, 4)),
                                              "contextFeatures": [{"user": {"segment": str(i % 3)}}]}).json["rewardActionId"]
              == best[i % 3] for i in range(60)]
    assert sum(served) / len(served) > 0.8


def test_logging_only_logs_and_joins_but_learns_nothing(make_app: Any, database_url: str, clock: Any) -> None:
    app = make_app(database_url=database_url, clock=clock, start=False, learner="inline", learning_mode="LoggingOnly",
                   reward_wait_time=5)
    client = app.test_client()
    service = app.extensions["personalize"]
    for i in range(30):
        client.post(f"{V1}/rank", json={"actions": _actions(list(KINDS)), "eventId": f"l-{i}"})
        if i % 2:
            assert client.post(f"{V1}/events/l-{i}/reward", json={"value": 1.0}).status_code == 204
    clock.advance(6)
    client.post(f"{V1}/rank", json={"actions": _actions(list(KINDS)), "eventId": "late"})
    service.learner.step()
    status = client.get(f"{V1}/status").json
    assert status["model"]["version"] == 0 and status["model"]["eventsLearned"] == 0
    assert status["events"]["learned"] == 0 and status["events"]["loggedOnly"] == 30
    assert status["events"]["readyToLearn"] == 0 and status["rewards"]["received"] == 15
    with service.db.read() as session:
        rewards = {e.event_id: e.learned_reward for e in session.query(Event).filter(Event.event_id != "late")}
    assert rewards == {f"l-{i}": (1.0 if i % 2 else 0.0) for i in range(30)}  # joined: reward or default
    # back to Online: the logged-only events are never learned, new ones are
    _set_mode(client, "Online")
    client.post(f"{V1}/rank", json={"actions": _actions(list(KINDS)), "eventId": "on-1"})
    client.post(f"{V1}/events/on-1/reward", json={"value": 1.0})
    status = client.get(f"{V1}/status").json
    assert status["events"]["learned"] == 1 and status["model"]["eventsLearned"] == 1


def test_a_mode_change_applies_to_the_next_rank(make_app: Any) -> None:
    app = make_app(start=False, exploration=1.0)  # uniform: Online answers any action
    client = app.test_client()
    order = list(KINDS)
    online = {client.post(f"{V1}/rank", json={"actions": _actions(order)}).json["rewardActionId"] for _ in range(40)}
    assert len(online) > 1
    _set_mode(client, "Apprentice")
    apprentice = {client.post(f"{V1}/rank", json={"actions": _actions(order)}).json["rewardActionId"] for _ in range(40)}
    assert apprentice == {order[0]}
    with app.extensions["personalize"].db.read() as session:
        metrics = store.apprentice_metrics(session, -1, 1)
    assert metrics is None  # nothing joined yet: the window holds only closed events
