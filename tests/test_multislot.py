"""Multi-slot Rank, Reward and Activate (personalize/multislot.py, personalize/api/multislot.py): the answers,
the exact per-slot probabilities, the per-slot join, validation, and the model lineage of its own."""

from __future__ import annotations

import math
import random
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from personalize.config import load_settings
from personalize.dsjson import multislot_line
from personalize.models import Event, Reward
from personalize.multislot import SlotRanker, baseline_choice, parse_multislot_request
from personalize.api.schemas import RequestSchemas

PREFIXES = ("/personalizer/v1.0", "/personalizer")
RANK = "/personalizer/v1.0/multislot/rank"
ACTIONS = [{"id": a, "features": [{"item": {"kind": a}}]} for a in ("news", "sports", "film", "music", "games")]
SLOTS = [{"id": "hero", "features": [{"size": "large"}], "baselineAction": "news"},
         {"id": "side1", "features": [{"size": "small"}], "baselineAction": "sports"},
         {"id": "side2", "features": [{"size": "small"}], "excludedActions": ["news"], "baselineAction": "film"}]
CONTEXT = [{"user": {"segment": "student"}}]


def body(**extra: Any) -> dict[str, Any]:
    return {"contextFeatures": CONTEXT, "actions": ACTIONS, "slots": SLOTS, **extra}


def reward_url(event_id: str, prefix: str = "/personalizer/v1.0") -> str:
    return f"{prefix}/multislot/events/{event_id}/reward"


def setup(make_app: Any, clock: Any, **settings: Any) -> tuple[Any, Any]:
    app = make_app(clock=clock, start=False, reward_wait_time=10, default_reward=0.25, **settings)
    return app.test_client(), app.extensions["personalize"]


def stored(service: Any, event_id: str) -> Event:
    with service.sessions() as session:
        return session.execute(select(Event).where(Event.event_id == event_id)).scalar_one()


# -- Rank ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("prefix", PREFIXES)
def test_rank_answers_a_distinct_action_per_slot(make_app: Any, prefix: str) -> None:
    client = make_app(start=False).test_client()
    response = client.post(f"{prefix}/multislot/rank?api-version=2022-09-01-preview", json=body(eventId="e1"))
    assert response.status_code == 201, response.json
    out = response.json
    assert out["eventId"] == "e1"
    assert [s["id"] for s in out["slots"]] == ["hero", "side1", "side2"]
    chosen = [s["rewardActionId"] for s in out["slots"]]
    assert len(set(chosen)) == 3 and set(chosen) <= {a["id"] for a in ACTIONS}
    assert chosen[2] != "news"


def test_rank_is_logged_with_each_slots_exact_probability(make_app: Any, clock: Any, database_url: str) -> None:
    client, service = setup(make_app, clock, database_url=database_url)
    out = client.post(RANK, json=body(eventId="e1")).json
    event = stored(service, "e1")
    ids = [a["id"] for a in ACTIONS]
    assert event.action_ids == ids
    assert [s["id"] for s in event.slots] == ["hero", "side1", "side2"]
    for slot, answer in zip(event.slots, out["slots"]):
        assert ids[slot["ranking"][0]] == answer["rewardActionId"]
        assert math.isclose(sum(slot["probabilities"]), 1.0, abs_tol=1e-9)
    # an untrained model is uniform over what each slot may still take (with the floor: still uniform)
    assert [s["probabilities"][0] for s in event.slots] == pytest.approx([1 / 5, 1 / 4, 1 / len(event.slots[2]["ranking"])])
    assert event.probability == pytest.approx(math.prod(s["probabilities"][0] for s in event.slots))
    assert event.ranking == [s["ranking"][0] for s in event.slots]
    example = orjson.loads(event.example)
    assert [s["_id"] for s in example["_slots"]] == ["hero", "side1", "side2"]
    assert example["_slots"][2]["_inc"] == [1, 2, 3, 4]  # side2 excludes news
    assert "_inc" not in example["_slots"][0]


def test_rank_is_seeded_by_the_event_id(make_app: Any, tmp_path: Any) -> None:
    first = make_app(start=False, data_dir=str(tmp_path / "a")).test_client().post(RANK, json=body(eventId="same")).json
    second = make_app(start=False, data_dir=str(tmp_path / "b")).test_client().post(RANK, json=body(eventId="same")).json
    assert first == second


def test_a_slot_left_without_an_action_is_answered_without_one(make_app: Any, clock: Any) -> None:
    client, service = setup(make_app, clock)
    actions = ACTIONS[:2]
    slots = [{"id": "a", "baselineAction": "news"}, {"id": "b", "baselineAction": "sports", "excludedActions": ["news"]}]
    answers = set()
    for i in range(40):
        out = client.post(RANK, json={"actions": actions, "slots": slots, "eventId": f"e{i}"}).json
        answers.add(tuple(s.get("rewardActionId") for s in out["slots"]))
        if out["slots"][1].get("rewardActionId") is None:  # slot a took sports: b allows nothing else
            event = stored(service, f"e{i}")
            assert event.slots[1] == {"id": "b", "ranking": [], "probabilities": []}
            assert len(orjson.loads(event.example)["_slots"]) == 1
            bad = client.post(reward_url(f"e{i}"), json={"reward": [{"slotId": "b", "value": 1}]})
            assert bad.status_code == 409 and bad.json["error"]["target"] == "reward[0].slotId"
            assert client.post(reward_url(f"e{i}"), json={"reward": [{"slotId": "a", "value": 1}]}).status_code == 204
    assert answers == {("news", "sports"), ("sports", None)}
    clock.advance(11)
    assert service.learner.step() == 40  # both kinds of events learn


def test_baseline_choice_answers_every_slots_baseline_with_probability_one() -> None:
    settings = load_settings({}, env={})
    request = parse_multislot_request(body(eventId="b1"), RequestSchemas(settings), 5000)
    decision = SlotRanker(settings.multislot_vw_args, 0.02, 5).decide(request, "auto", chooser=baseline_choice)
    assert [c.ranking[0] for c in decision.slots] == [0, 1, 2]
    assert all(c.probabilities[0] == 1.0 and sum(c.probabilities) == 1.0 for c in decision.slots)


# -- the exploration the ranker relies on -----------------------------------------------------------
def test_vw_conditions_each_slot_on_the_action_it_lists_first() -> None:
    """SlotRanker's shortcut: VW leaves out, in each later slot, the action it lists first for an earlier one.
    Checked on a trained model, where that action is often not the most probable one (SquareCB)."""
    settings = load_settings({}, env={})
    ranker = SlotRanker(settings.multislot_vw_args)
    model = ranker._model
    schemas = RequestSchemas(settings)
    rng = random.Random(1)
    for i in range(300):  # train on random outcomes
        request = parse_multislot_request(body(eventId=f"t{i}", contextFeatures=[{"u": {"s": rng.randrange(3)}}]), schemas, 5000)
        decision = ranker.decide(request, "auto")
        event = SimpleNamespace(created_at=0.0, event_id=f"t{i}", model_version=0, example=decision.example,
                                slots=[{"id": c.id, "ranking": c.ranking, "probabilities": c.probabilities} for c in decision.slots])
        model.learn(multislot_line(event, [-float(rng.random() < 0.5) for c in decision.slots if c.ranking]))
    base = '{"c":{"c_u":{"s":1},"_multi":' + orjson.dumps([{"a_item": {"kind": a["id"]}} for a in ACTIONS]).decode()
    line = base + ',"_slots":[{"_id":"a","s":{"size":"large"}},{"_id":"b"},{"_id":"c","_inc":[1,2,3,4]}]}}'
    pmfs = model.predict_slots(line)
    taken: set[int] = set()
    for k, pmf in enumerate(pmfs):
        allowed = {0, 1, 2, 3, 4} if k < 2 else {1, 2, 3, 4}
        assert {a for a, _ in pmf} == allowed - taken
        taken.add(pmf[0][0])


# -- Reward and the per-slot join -------------------------------------------------------------------
def test_each_slot_is_joined_on_its_own(make_app: Any, clock: Any, database_url: str) -> None:
    client, service = setup(make_app, clock, database_url=database_url)
    client.post(RANK, json=body(eventId="e1"))
    assert client.post(reward_url("e1"), json={"reward": [{"slotId": "hero", "value": 1.0}]}).status_code == 204
    assert service.learner.step() == 0  # earliest: ready once every slot has its first reward
    assert client.post(reward_url("e1", "/personalizer"), json={"reward": [
        {"slotId": "side1", "value": 0.5}, {"slotId": "hero", "value": -1.0}]}).status_code == 204
    assert service.learner.step() == 0
    assert client.post(reward_url("e1"), json={"reward": [{"slotId": "side2", "value": 0.0}]}).status_code == 204
    assert service.learner.step() == 1
    event = stored(service, "e1")
    assert event.learned_slot_rewards == [1.0, 0.5, 0.0]  # hero's second reward was not counted
    assert event.learned_reward == pytest.approx(0.5)
    with service.sessions() as session:
        rows = session.execute(select(Reward.slot, Reward.value, Reward.counted).order_by(Reward.id)).all()
    assert [tuple(r) for r in rows] == [(0, 1.0, True), (1, 0.5, True), (0, -1.0, False), (2, 0.0, True)]
    status = client.get("/personalizer/v1.0/status").json
    assert status["multislotModel"]["version"] == 1 and status["multislotModel"]["servingVersion"] == 1
    assert status["model"]["version"] == 0  # the single-slot lineage is untouched


def test_sum_and_default_rewards_per_slot(make_app: Any, clock: Any) -> None:
    client, service = setup(make_app, clock, reward_aggregation="sum")
    client.post(RANK, json=body(eventId="e1"))
    for value in (0.75, 0.75):
        client.post(reward_url("e1"), json={"reward": [{"slotId": "side2", "value": value}]})
    client.post(reward_url("e1"), json={"reward": [{"slotId": "hero", "value": -0.5}, {"slotId": "hero", "value": 0.25}]})
    assert service.learner.step() == 0  # sum: at the end of the wait
    clock.advance(10.5)
    assert service.learner.step() == 1
    assert stored(service, "e1").learned_slot_rewards == [-0.25, 0.25, 1.0]  # side1: default; side2: clamped sum
    late = client.post(reward_url("e1"), json={"reward": [{"slotId": "hero", "value": 1}]})
    assert late.status_code == 409 and late.json["error"]["code"] == "RewardWindowClosed"


def test_deferred_multislot_event_waits_for_activation(make_app: Any, clock: Any) -> None:
    client, service = setup(make_app, clock)
    client.post(RANK, json=body(eventId="d1", deferActivation=True))
    clock.advance(100)
    assert service.learner.step() == 0
    assert client.post("/personalizer/multislot/events/d1/activate").status_code == 204
    clock.advance(10.5)
    assert service.learner.step() == 1
    assert stored(service, "d1").learned_slot_rewards == [0.25, 0.25, 0.25]


def test_kinds_do_not_mix(make_app: Any, clock: Any) -> None:
    client, service = setup(make_app, clock)
    client.post(RANK, json=body(eventId="multi"))
    client.post("/personalizer/v1.0/rank", json={"actions": ACTIONS, "eventId": "single"})
    for url, payload, code in [
        ("/personalizer/v1.0/events/multi/reward", {"value": 1}, "MultiSlotEvent"),
        ("/personalizer/v1.0/events/multi/activate", None, "MultiSlotEvent"),
        (reward_url("single"), {"reward": [{"slotId": "hero", "value": 1}]}, "SingleSlotEvent"),
        ("/personalizer/v1.0/multislot/events/single/activate", None, "SingleSlotEvent"),
    ]:
        response = client.post(url, json=payload) if payload is not None else client.post(url)
        assert response.status_code == 409, url
        assert response.json["error"]["code"] == code and response.json["error"]["target"] == "eventId"
    assert client.post(reward_url("nope"), json={"reward": [{"slotId": "hero", "value": 1}]}).status_code == 404
    # an eventId is unique across both kinds
    assert client.post(RANK, json=body(eventId="single")).status_code == 409
    assert service.learner.step() == 0


# -- validation --------------------------------------------------------------------------------------
def _slots(*changes: dict[str, Any]) -> list[dict[str, Any]]:
    return [{**slot, **change} for slot, change in zip(SLOTS, changes)]


BAD_RANKS = [
    ({"slots": []}, 400, "slots"),
    ({"slots": [{"id": "x"}]}, 400, "slots[0].baselineAction"),
    ({"slots": _slots({}, {"id": "hero"}, {})}, 400, "slots[1].id"),
    ({"slots": _slots({}, {"baselineAction": "news"}, {})}, 400, "slots[1].baselineAction"),
    ({"slots": _slots({}, {}, {"baselineAction": "nope"})}, 400, "slots[2].baselineAction"),
    ({"slots": _slots({}, {}, {"baselineAction": "news"})}, 400, "slots[2].baselineAction"),  # excluded there
    ({"slots": _slots({}, {}, {"excludedActions": ["nope"]})}, 400, "slots[2].excludedActions[0]"),
    ({"actions": ACTIONS[:2]}, 400, "slots"),  # more slots than actions
    ({"actions": ACTIONS + [ACTIONS[0]]}, 400, "actions[5].id"),
    ({"slots": _slots({"features": [{"_x": 1}]}, {}, {})}, 400, "slots[0].features[0]._x"),
    ({"slots": _slots({"features": [{"ActionId": {"a": 1}}]}, {}, {})}, 400, "slots[0].features"),
    ({"slots": _slots({"colour": "red"}, {}, {})}, 400, "slots[0].colour"),
    ({"excludedActions": ["news"]}, 400, "excludedActions"),
    ({"actions": []}, 400, "actions"),
]


@pytest.mark.parametrize("change,status,target", BAD_RANKS)
def test_bad_multislot_ranks_name_the_field(make_app: Any, change: dict[str, Any], status: int, target: str) -> None:
    client = make_app(start=False).test_client()
    response = client.post(RANK, json=body(**change))
    assert response.status_code == status, response.json
    assert response.json["error"]["target"] == target, response.json
    assert response.json["error"]["message"]


@pytest.mark.parametrize("payload,status,target", [
    ({"reward": []}, 400, "reward"),
    ({"reward": [{"slotId": "nope", "value": 1}]}, 404, "reward[0].slotId"),
    ({"reward": [{"slotId": "hero", "value": 1}, {"slotId": "other", "value": 1}]}, 404, "reward[1].slotId"),
    ({"reward": [{"slotId": "hero", "value": 2}]}, 400, "reward[0].value"),
    ({"reward": [{"slotId": "hero"}]}, 400, "reward[0].value"),
    ({"value": 1}, 400, "value"),
])
def test_bad_multislot_rewards_name_the_field_and_store_nothing(make_app: Any, clock: Any, payload: Any, status: int,
                                                                target: str) -> None:
    client, service = setup(make_app, clock)
    client.post(RANK, json=body(eventId="e1"))
    response = client.post(reward_url("e1"), json=payload)
    assert response.status_code == status, response.json
    assert response.json["error"]["target"] == target
    assert client.get("/personalizer/v1.0/status").json["rewards"]["received"] == 0


def test_activate_takes_no_body(make_app: Any) -> None:
    client = make_app(start=False).test_client()
    client.post(RANK, json=body(eventId="e1", deferActivation=True))
    assert client.post("/personalizer/v1.0/multislot/events/e1/activate", json={"x": 1}).status_code == 400


def test_crossed_feature_limit_counts_every_slot(make_app: Any) -> None:
    client = make_app(start=False, max_crossed_features=200).test_client()
    context = [{"user": {f"f{i}": i + 1 for i in range(10)}}]
    response = client.post(RANK, json=body(contextFeatures=context))
    assert response.status_code == 400 and response.json["error"]["code"] == "TooManyCrossedFeatures"
    assert client.post(RANK, json=body()).status_code == 201


# -- properties --------------------------------------------------------------------------------------
_ids = st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), min_size=1, max_size=6)


@st.composite
def requests(draw: Any) -> dict[str, Any]:
    action_ids = draw(st.lists(_ids, min_size=1, max_size=8, unique=True))
    n_slots = draw(st.integers(1, len(action_ids)))
    baselines = draw(st.permutations(action_ids))[:n_slots]
    slot_ids = draw(st.lists(_ids, min_size=n_slots, max_size=n_slots, unique=True))
    slots = []
    for k, baseline in enumerate(baselines):
        others = [a for a in action_ids if a != baseline]
        excluded = draw(st.lists(st.sampled_from(others), unique=True)) if others else []
        slot: dict[str, Any] = {"id": slot_ids[k], "baselineAction": baseline, "excludedActions": excluded}
        if draw(st.booleans()):
            slot["features"] = [{"pos": k}]
        slots.append(slot)
    actions = [{"id": a, "features": [{"item": {"n": i % 3}}]} for i, a in enumerate(action_ids)]
    return {"actions": actions, "slots": slots, "contextFeatures": [{"u": {"x": draw(st.integers(0, 2))}}],
            "eventId": draw(st.text("abcdefghij0123456789-", min_size=8, max_size=16))}


@pytest.fixture(scope="module")
def trained_client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A service whose multi-slot model learned a few hundred events (so its PMFs are not uniform)."""
    from personalize.app import create_app

    settings = load_settings({"data_dir": str(tmp_path_factory.mktemp("ms")), "learner": "inline",
                              "reward_wait_time": 0}, env={})
    app = create_app(settings, start=False)
    client = app.test_client()
    for i in range(200):
        out = client.post(RANK, json=body(eventId=f"train{i}", contextFeatures=[{"u": {"x": i % 3}}])).json
        rewards = [{"slotId": s["id"], "value": float(s["rewardActionId"] == ("news", "film", "games")[i % 3])}
                   for s in out["slots"]]
        client.post(reward_url(out["eventId"]), json={"reward": rewards})
    yield client
    app.extensions["personalize"].close()


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(request=requests())
def test_slot_answers_are_distinct_allowed_and_logged_with_valid_probabilities(trained_client: Any, request: dict[str, Any]) -> None:
    response = trained_client.post(RANK, json=request)
    if response.status_code == 409:  # the drawn eventId was used by an earlier example
        return
    assert response.status_code == 201, response.json
    answers = response.json["slots"]
    assert [s["id"] for s in answers] == [s["id"] for s in request["slots"]]
    chosen = [s.get("rewardActionId") for s in answers]
    given_ = [c for c in chosen if c is not None]
    assert len(given_) == len(set(given_))
    assert chosen[0] is not None
    for slot, answer in zip(request["slots"], chosen):
        assert answer is None or answer not in slot["excludedActions"]
        if answer is None:  # only when every action it allows was taken before it
            assert {a["id"] for a in request["actions"]} - set(slot["excludedActions"]) <= set(given_)
    service = trained_client.application.extensions["personalize"]
    event = stored(service, request["eventId"])
    ids = [a["id"] for a in request["actions"]]
    for slot, logged, answer in zip(request["slots"], event.slots, chosen):
        if answer is None:
            assert logged["ranking"] == []
            continue
        assert ids[logged["ranking"][0]] == answer
        allowed = set(ids) - set(slot["excludedActions"])
        assert {ids[i] for i in logged["ranking"]} <= allowed
        assert all(0.0 < p <= 1.0 for p in logged["probabilities"])  # the floor keeps every action possible
        assert math.isclose(sum(logged["probabilities"]), 1.0, abs_tol=1e-9)
