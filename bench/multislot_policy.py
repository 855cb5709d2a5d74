"""Multi-slot learning policies compared on simulated pages (how the default multislot_learning_policy was chosen).

Each policy runs the service's own multi-slot path: requests parsed as Rank parses them, slots filled by
personalize.multislot.SlotRanker (the service's exploration floor and SquareCB scaling included), and every
event learned, as soon as it is rewarded, from the CCB DSJSON line the learner would learn (dsjson.multislot_line).

Problems:
- ``slots``: 6 actions, 3 slots; each context segment has a distinct best action per slot (reward 1 for it,
  0 otherwise): the problem of tests/test_multislot_learning.py.
- ``homepage``: 12 articles in 4 categories, 3 slots (a hero and two side slots) with position bias (a click
  in the hero is 3x as likely as in a side slot), 4 user segments each preferring some categories; the reward
  is a Bernoulli click. The oracle fills the slots in order with the unshown article of highest click rate.

Reported per policy (mean over seeds): the mean reward per slot over the last quarter of the rounds, and the
share of slots answered with the oracle's action there. Run ``python bench/multislot_policy.py --help``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable

from personalize.api.schemas import RequestSchemas
from personalize.config import Settings, load_settings
from personalize.dsjson import multislot_line
from personalize.multislot import SlotRanker, parse_multislot_request

POLICIES = [
    "--ccb_explore_adf --squarecb --cb_type mtr -q ca -q sa --cubic csa",  # the default
    "--ccb_explore_adf --squarecb --cb_type mtr -q ca -q sa --cubic csa -l 2",  # the single-slot default's rate
    "--ccb_explore_adf --squarecb --cb_type mtr -q ca -q sa -l 2",  # the single-slot default's shape
    "--ccb_explore_adf --epsilon 0.05 --cb_type mtr -q ca -q sa --cubic csa",  # epsilon-greedy
]


@dataclass
class Problem:
    name: str
    actions: list[dict[str, Any]]
    slots: list[dict[str, Any]]
    segments: list[str]
    rate: Callable[[str, int, str], float]  # (segment, slot position, action id) -> expected reward


def slots_problem() -> Problem:
    best = {"student": ("games", "music", "sports"), "parent": ("food", "news", "film"), "retiree": ("news", "film", "food")}
    actions = [{"id": a, "features": [{"item": {"kind": a}}]} for a in ("news", "sports", "film", "music", "games", "food")]
    slots = [{"id": "hero", "features": [{"size": "large"}], "baselineAction": "news"},
             {"id": "side1", "features": [{"size": "small"}], "baselineAction": "sports"},
             {"id": "side2", "features": [{"size": "small"}], "baselineAction": "film"}]
    return Problem("slots", actions, slots, list(best), lambda seg, k, a: float(best[seg][k] == a))


def homepage_problem() -> Problem:
    categories = ["politics", "sport", "culture", "tech"]
    actions = [{"id": f"{c}-{i}", "features": [{"article": {"category": c, "long": i % 2 == 0}}]}
               for c in categories for i in range(3)]
    likes = {"commuter": {"politics": 0.30, "tech": 0.20}, "fan": {"sport": 0.45, "culture": 0.10},
             "reader": {"culture": 0.35, "politics": 0.15}, "geek": {"tech": 0.40, "sport": 0.10}}
    bias = (1.0, 0.35, 0.3)
    slots = [{"id": "hero", "features": [{"slot": {"size": "large", "position": "top"}}], "baselineAction": "politics-0"},
             {"id": "left", "features": [{"slot": {"size": "small", "position": "side"}}], "baselineAction": "sport-0"},
             {"id": "right", "features": [{"slot": {"size": "small", "position": "side"}}], "baselineAction": "tech-0"}]

    def rate(segment: str, k: int, action: str) -> float:
        category, _, n = action.partition("-")
        return bias[k] * (likes[segment].get(category, 0.03) + (0.05 if int(n) == 0 else 0.0))

    return Problem("homepage", actions, slots, list(likes), rate)


def oracle(problem: Problem, segment: str) -> list[str]:
    taken: list[str] = []
    for k in range(len(problem.slots)):
        options = [a["id"] for a in problem.actions if a["id"] not in taken]
        taken.append(max(options, key=lambda a: problem.rate(segment, k, a)))
    return taken


def run(problem: Problem, policy: str, rounds: int, seed: int, settings: Settings) -> tuple[float, float]:
    rng = random.Random(seed)
    schemas = RequestSchemas(settings)
    args = Settings(multislot_learning_policy=policy).multislot_vw_args
    ranker = SlotRanker(args, settings.exploration, settings.squarecb_actions)
    tail = rounds - rounds // 4
    rewards: list[float] = []
    agree: list[float] = []
    for i in range(rounds):
        segment = rng.choice(problem.segments)
        body = {"contextFeatures": [{"user": {"segment": segment}}], "actions": problem.actions, "slots": problem.slots,
                "eventId": f"{seed}-{i}"}
        request = parse_multislot_request(body, schemas, settings.max_features)
        decision = ranker.decide(request, settings.action_id_feature)
        chosen = [problem.actions[c.ranking[0]]["id"] for c in decision.slots]
        values = [float(rng.random() < problem.rate(segment, k, a)) for k, a in enumerate(chosen)]
        event = _Event(f"{seed}-{i}", decision.example,
                       [{"id": c.id, "ranking": c.ranking, "probabilities": c.probabilities} for c in decision.slots])
        ranker._model.learn(multislot_line(event, values))
        if i >= tail:
            rewards.extend(values)
            agree.extend(float(a == b) for a, b in zip(chosen, oracle(problem, segment)))
    return statistics.fmean(rewards), statistics.fmean(agree)


@dataclass
class _Event:
    event_id: str
    example: str
    slots: list[dict[str, Any]]
    created_at: float = 0.0
    model_version: int = 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=1500)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--problems", default="slots,homepage")
    parser.add_argument("--policy", action="append", help="a policy to compare (repeatable; default: the built-in list)")
    options = parser.parse_args()
    settings = load_settings({}, env={})
    problems = {"slots": slots_problem, "homepage": homepage_problem}
    policies = options.policy or POLICIES
    for name in options.problems.split(","):
        problem = problems[name]()
        # the oracle's own value on this problem, for scale (expected reward per slot)
        best = statistics.fmean(problem.rate(s, k, a) for s in problem.segments for k, a in enumerate(oracle(problem, s)))
        print(f"\n{name}: {len(problem.actions)} actions, {len(problem.slots)} slots, {options.rounds} rounds x "
              f"{options.seeds} seeds; oracle's expected reward per slot {best:.3f}")
        print(f"{'policy':<72} {'reward/slot':>12} {'= oracle':>9} {'seconds':>8}")
        for policy in policies:
            start = time.perf_counter()
            results = [run(problem, policy, options.rounds, seed, settings) for seed in range(options.seeds)]
            reward = statistics.fmean(r for r, _ in results)
            agree = statistics.fmean(a for _, a in results)
            spread = max(r for r, _ in results) - min(r for r, _ in results)
            print(f"{policy:<72} {reward:>7.3f} ±{spread / 2:.3f} {agree:>8.1%} {time.perf_counter() - start:>8.1f}")


if __name__ == "__main__":
    main()
