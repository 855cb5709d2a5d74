"""personalize.vw calls vowpal_wabbit_next's extension directly: it must behave exactly like the public API."""

from __future__ import annotations

import json
import random

import pytest
import vowpal_wabbit_next as vw

from personalize.config import DEFAULT_LEARNING_POLICY, load_settings
from personalize.features import ACTION_INDEX, CONTEXT_INDEX, build_context, feature_namespaces
from personalize.vw import Model, SlotModel


def _lines(n: int, seed: int = 7) -> list[tuple[str, str]]:
    """(unlabelled rank line, labelled learn line) pairs over varying contexts and action sets."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        k = rng.randint(2, 12)
        actions = [(f"a{j}", feature_namespaces([{"item": {"kind": f"k{j % 4}", "price": rng.random(), "tags": ["x", f"t{j % 3}"]}}], "a", ACTION_INDEX))
                   for j in rng.sample(range(20), k)]
        context = feature_namespaces([{"user": {"seg": f"s{rng.randint(0, 4)}", "age": rng.randint(18, 80)}}, {"hour": rng.randint(0, 23)}], "c", CONTEXT_INDEX)
        c = build_context(context, actions, "cross")
        chosen = rng.randrange(k)
        head = (f'{{"_label_cost":{-float(rng.random() < 0.3)},"_label_probability":{rng.uniform(0.05, 1.0)},'
                f'"_label_Action":{chosen + 1},"_labelIndex":{chosen},"a":[{chosen + 1}],"p":[0.5],')
        out.append(('{"c":' + c + "}", head + '"c":' + c + "}"))
    return out


@pytest.mark.parametrize("policy", [DEFAULT_LEARNING_POLICY, "--cb_explore_adf --epsilon 0.1 -q ::", "--cb_explore_adf --cover 3"])
def test_model_predicts_and_learns_exactly_like_the_public_api(policy: str) -> None:
    args = load_settings({"learning_policy": policy}, env={}).vw_args
    public = vw.Workspace(args)
    parser = vw.DSJsonFormatParser(public)
    ours = Model(args)
    for rank_line, learn_line in _lines(300):
        assert ours.predict(rank_line) == public.predict_one(parser.parse_json(rank_line))
        public.learn_one(parser.parse_json(learn_line))
        ours.learn(learn_line)
    assert ours.serialize() == public.serialize()

    loaded_public = vw.Workspace(["--quiet"], model_data=public.serialize())
    loaded_ours = Model(["--quiet"], model_data=ours.serialize())
    loaded_parser = vw.DSJsonFormatParser(loaded_public)
    for rank_line, _ in _lines(50, seed=8):
        assert loaded_ours.predict(rank_line) == loaded_public.predict_one(loaded_parser.parse_json(rank_line))
    assert len(ours.parse(_lines(1)[0][0])) >= 3  # shared example plus one per action


def test_model_refuses_a_policy_that_is_not_a_multiline_contextual_bandit() -> None:
    with pytest.raises(ValueError, match="cb_explore_adf"):
        Model(["--quiet"])


def test_bad_json_raises_like_the_public_parser() -> None:
    model = Model(load_settings(env={}).vw_args)
    with pytest.raises(RuntimeError):
        vw.DSJsonFormatParser(vw.Workspace(load_settings(env={}).vw_args)).parse_json('{"c": [1, 2')
    with pytest.raises(RuntimeError):
        model.predict('{"c": [1, 2')


def _ccb_lines(n: int, seed: int = 3) -> list[tuple[str, str]]:
    """(unlabelled, labelled) CCB lines: 3 slots over 6 actions, the last slot excluding action 0."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        actions = [(f"a{j}", feature_namespaces([{"item": {"kind": f"k{j % 3}"}}], "a", ACTION_INDEX)) for j in range(6)]
        context = feature_namespaces([{"user": {"seg": f"s{rng.randint(0, 2)}"}}], "c", CONTEXT_INDEX)
        c = build_context(context, actions, "cross")[:-1]
        slots = [{"_id": "x", "s": {"pos": 0}}, {"_id": "y", "s": {"pos": 1}}, {"_id": "z", "s": {"pos": 2}, "_inc": [1, 2, 3, 4, 5]}]
        chosen = rng.sample(range(1, 6), 3)
        outcomes = ",".join(f'{{"_label_cost":{-float(rng.random() < 0.4)},"_a":[{a}],"_p":[{rng.uniform(0.1, 1):.3f}]}}'
                            for a in chosen)
        text = c + ',"_slots":' + json.dumps(slots) + "}"
        out.append(('{"c":' + text + "}", '{"c":' + text + ',"_outcomes":[' + outcomes + "]}"))
    return out


def test_slot_model_predicts_and_learns_exactly_like_the_public_api() -> None:
    args = load_settings(env={}).multislot_vw_args
    public = vw.Workspace(args)
    parser = vw.DSJsonFormatParser(public)
    ours = SlotModel(args)
    for rank_line, learn_line in _ccb_lines(200):
        assert ours.predict_slots(rank_line) == public.predict_one(parser.parse_json(rank_line))
        public.learn_one(parser.parse_json(learn_line))
        ours.learn(learn_line)
    assert ours.serialize() == public.serialize()


def test_each_model_refuses_the_other_kind_of_policy() -> None:
    with pytest.raises(ValueError, match="ccb_explore_adf"):
        SlotModel(load_settings(env={}).vw_args)
    with pytest.raises(ValueError, match="cb_explore_adf"):
        Model(load_settings(env={}).multislot_vw_args)
