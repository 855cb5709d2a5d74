"""personalize/evaluation/importance.py: features named as the client sent them, and drop-one scores."""

from __future__ import annotations

import orjson

from personalize.evaluation.importance import _drop, _features, _namespace_name, feature_importance
from personalize.features import ACTION_INDEX, CONTEXT_INDEX, FeatureBudget, build_context, counted_namespaces
from personalize.vw import Model


def _context(context_features: list, actions: list) -> dict:
    budget = FeatureBudget(10_000)
    context, _ = counted_namespaces(context_features, "contextFeatures", CONTEXT_INDEX, budget)
    kept = [(str(i), counted_namespaces(a, "a", ACTION_INDEX, budget)[0]) for i, a in enumerate(actions)]
    return orjson.loads(build_context(context, kept, "auto"))


def test_features_are_named_as_sent() -> None:
    c = _context([{"user": {"tier": "gold", "geo": {"city": "x"}}}, {"hour": 8}, {"tags": ["a", "b"]}],
                 [[{"dish": {"cuisine": "it"}}, {"price": 3}], []])
    named = {(f[0], _namespace_name(f[1][-1], f[0]), f[2]) for f in _features(c)}
    assert named == {("c", "user", "tier"), ("c", "geo", "city"), ("c", "", "hour"), ("c", "tags", "a"),
                     ("c", "tags", "b"), ("a", "dish", "cuisine"), ("a", "", "price")}  # not the service's ActionId
    for feature in _features(c):
        dropped = _drop(c, feature)
        assert dropped is not None and feature not in set(_features(dropped))
        assert len(list(_features(dropped))) == len(list(_features(c))) - 1
    assert c == _context([{"user": {"tier": "gold", "geo": {"city": "x"}}}, {"hour": 8}, {"tags": ["a", "b"]}],
                         [[{"dish": {"cuisine": "it"}}, {"price": 3}], []])  # dropping copies, never mutates


def test_a_feature_the_model_ignores_scores_zero_and_the_deciding_one_scores_most() -> None:
    model = Model("--cb_explore_adf --epsilon 0 -q ca --quiet".split())
    contexts = []
    for i in range(400):
        kind, noise = "ab"[i % 2], "pqr"[i % 3]
        c = _context([{"user": {"kind": kind, "noise": noise}}], [[{"item": {"k": x}}] for x in "ab"])
        chosen = i % 2 if i % 5 else 1 - i % 2
        cost = -1.0 if "ab"[chosen] == kind else 0.0
        line = orjson.dumps({"_label_cost": cost, "_label_probability": 0.5, "_label_Action": chosen + 1,
                             "_labelIndex": chosen, "a": [1, 2], "p": [0.5, 0.5], "c": c}).decode()
        model.learn(line)
        contexts.append(c)
    scores = feature_importance(contexts, model)
    assert (scores[0]["namespace"], scores[0]["featureName"]) in {("user", "kind"), ("item", "k")}
    by_name = {(s["namespace"], s["featureName"]): s["score"] for s in scores}
    assert by_name[("user", "kind")] > 5 * by_name[("user", "noise")]
    assert all(0.0 <= s["score"] <= 1.0 for s in scores) and all(s["events"] == 400 for s in scores)
