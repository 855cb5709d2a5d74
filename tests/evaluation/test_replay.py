"""Replay and the evaluate command on a log written by the real service, and OPE vs ground truth."""

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from personalize.evaluation.commands import evaluate_command
from personalize.evaluation.estimators import UNBIASED
from personalize.evaluation.replay import frozen_policy, parse_dsjson, policy_args, replay_policy, reward_model
from personalize.ranker import Explorer
from simulator.config import load_config
from simulator.ope_validation import always_best, format_report, log_with_truth, validate


@pytest.fixture(scope="module")
def ground_truth(tmp_path_factory: pytest.TempPathFactory):
    """A uniformly exploring service logs 400 events in a small simulated world."""
    config = load_config().with_overrides(
        seed=5, items={"source": "synthetic", "count": 200}, users={"source": "synthetic", "count": 30},
        run={"actions": 4, "learn_every": 5},
    )
    return log_with_truth(config, 400, tmp_path_factory.mktemp("ope"), {"exploration": 1.0})


def test_log_round_trips(ground_truth) -> None:
    events = ground_truth.events
    assert len(events) >= 395
    assert all(abs(e.logged_pmf.sum() - 1.0) < 1e-6 and e.reward in (0.0, 1.0) for e in events)
    pmfs = replay_policy(events[:50], policy_args("--cb_explore_adf -q :: --epsilon 0.1"))
    assert all(abs(p.sum() - 1.0) < 1e-9 and p.min() >= 0.1 / len(p) - 1e-6 for p in pmfs)


def test_replay_serves_the_policy_as_the_service_would(ground_truth) -> None:
    """`personalize evaluate` scores a policy with the service's floor and SquareCB scaling, not VW's raw PMF."""
    args = policy_args("--cb_explore_adf --squarecb --cb_type mtr -q ca")
    raw = replay_policy(ground_truth.events[:60], args)
    served = replay_policy(ground_truth.events[:60], args, Explorer.for_policy(args, 0.2, 2))
    for r, s in zip(raw, served):
        assert abs(s.sum() - 1.0) < 1e-9 and s.min() >= 0.2 / len(s) - 1e-12
        assert np.allclose(s, Explorer(0.2, 2).pmf(list(r)))


def test_always_best_policy_is_estimated_at_the_oracle_value(ground_truth) -> None:
    """99 % intervals: five estimators on one 400-event log would miss a 95 % interval by chance
    on about one log in five (a log changes whenever features or the world do)."""
    best = always_best(ground_truth, reps=400, level=0.99)
    for name in UNBIASED:
        low, high = best.intervals[name]
        assert low <= best.truth <= high, (name, best.truth, low, high)


def test_validation_scores_fixed_targets_against_their_exact_value(ground_truth, tmp_path: Path) -> None:
    train = 100
    results = {r.policy: r for r in validate(ground_truth, tmp_path, train, frozen=("--cb_explore_adf --epsilon 0.5",),
                                              learning=(), reps=50)}
    test = ground_truth.events[train:]
    on_policy = results["logging policy"]
    assert on_policy.estimates["ips"] == pytest.approx(np.mean([e.reward for e in test]))
    uniform = results["uniform"]
    assert uniform.truth == pytest.approx(np.mean([a.mean() for a in ground_truth.attractions[train:]]))
    frozen = results["frozen VW --cb_explore_adf --epsilon 0.5"]
    assert frozen.kind == "fixed" and 0.0 < frozen.truth < 1.0 and frozen.floor > 0
    assert "max / mean, fixed targets" in format_report(list(results.values()))


def test_frozen_policy_does_not_learn_from_the_events_it_scores(ground_truth) -> None:
    events = ground_truth.events
    args = policy_args("--cb_explore_adf --epsilon 0.2")
    once = frozen_policy(events[:100], events[100:150], args)
    again = frozen_policy(events[:100], events[100:150][::-1], args)[::-1]
    assert all(np.allclose(a, b) for a, b in zip(once, again))


def test_predictions_do_not_depend_on_the_logged_action(ground_truth) -> None:
    """A target's probability of action a must not move when the log says another action was taken."""
    events = ground_truth.events
    args = policy_args("--cb_explore_adf -q :: --epsilon 0.2")
    moved = []
    for e in events[100:130]:
        data = json.loads(e.line)
        other = (e.chosen + 1) % len(e.logged_pmf)
        data.update({"_labelIndex": other, "_label_Action": other + 1,
                     "a": [other + 1] + [a for a in data["a"] if a != other + 1]})
        moved.append(json.dumps(data))
    before = frozen_policy(events[:100], events[100:130], args)
    after = frozen_policy(events[:100], list(parse_dsjson(moved)), args)
    assert all(np.allclose(a, b) for a, b in zip(before, after))


def test_reward_model_is_calibrated_on_the_taken_actions(ground_truth) -> None:
    """Cross-fitted predictions of the taken actions average near the observed reward (plain
    ``--cb_type dm`` on every action would pull them all toward 0)."""
    events = ground_truth.events
    q = reward_model(events)
    taken = np.mean([qi[e.chosen] for qi, e in zip(q, events)])
    assert taken == pytest.approx(np.mean([e.reward for e in events]), abs=0.08)


def test_evaluate_command_on_a_dsjson_file(ground_truth, tmp_path: Path) -> None:
    logs = tmp_path / "events.dsjson"
    logs.write_text("\n".join(e.line for e in ground_truth.events) + "\n")
    result = CliRunner().invoke(evaluate_command, ["--logs", str(logs), "--policy", "--cb_explore_adf --epsilon 0.2",
                                                   "--bootstrap", "20"])
    assert result.exit_code == 0, result.output
    assert "online (logged)" in result.output and "--cb_explore_adf --epsilon 0.2" in result.output
    assert len(list(parse_dsjson(logs.read_text().splitlines()))) == len(ground_truth.events)
