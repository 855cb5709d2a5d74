"""The ranker: VW's PMF, SquareCB scaled to the number of actions, the floor, an event-seeded draw."""

from __future__ import annotations

import json

from personalize.config import load_settings
from personalize.ranker import Ranker
from personalize.sampling import mix_uniform, normalize, squarecb_scale
from personalize.vw import Model


def _context(k: int) -> str:
    return json.dumps({"c_u": {"seg": "s1"}, "_multi": [{"a_f": {"k": f"x{i}"}} for i in range(k)]})


def _trained(policy: list[str], k: int) -> bytes:
    model = Model(policy)
    for t in range(200):
        a = t % k
        line = {"_label_cost": -1.0 if a == 3 else 0.0, "_label_probability": 1 / k, "_label_Action": a + 1,
                "_labelIndex": a, "a": [a + 1], "p": [1 / k], "c": json.loads(_context(k))}
        model.learn(json.dumps(line))
    return model.serialize()


def test_large_action_sets_explore_like_squarecb_actions_and_log_that_probability() -> None:
    settings = load_settings({}, env={})
    k = 12
    snapshot = _trained(settings.vw_args, k)
    plain, scaled = Ranker(settings.vw_args, 0.02, 0), Ranker(settings.vw_args, 0.02, 5)
    for ranker in (plain, scaled):
        ranker.load(1, snapshot)
    a, b = plain.decide(_context(k), "e1"), scaled.decide(_context(k), "e1")
    pa = dict(zip(a.ranking, a.probabilities))
    pb = dict(zip(b.ranking, b.probabilities))
    assert abs(sum(pb.values()) - 1.0) < 1e-9
    vw_scores = dict(Model(["--quiet"], model_data=snapshot).predict('{"c":' + _context(k) + "}"))
    vw_pmf = normalize([vw_scores[i] for i in range(k)])
    expected = mix_uniform(squarecb_scale(vw_pmf, k / 5), 0.02)
    assert max(abs(pb[i] - expected[i]) for i in range(k)) < 1e-9
    assert pb[3] > pa[3]  # the learned best action keeps more probability: less exploration
    assert min(pb.values()) >= 0.02 / k - 1e-12  # the floor still holds


def test_small_action_sets_and_other_explorers_are_untouched() -> None:
    settings = load_settings({}, env={})
    snapshot = _trained(settings.vw_args, 5)
    plain, scaled = Ranker(settings.vw_args, 0.02, 0), Ranker(settings.vw_args, 0.02, 5)
    for ranker in (plain, scaled):
        ranker.load(1, snapshot)
    assert plain.decide(_context(5), "e").probabilities == scaled.decide(_context(5), "e").probabilities
    epsilon = load_settings({"learning_policy": "--cb_explore_adf --epsilon 0.1 -q ca"}, env={}).vw_args
    assert Ranker(epsilon, 0.02, 5).explorer.squarecb_actions == 0
