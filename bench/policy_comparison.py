"""Compare candidate Vowpal Wabbit learning policies for the personalize service.

Supervised-to-bandit benchmark: every class of a scikit-learn classification
dataset becomes an action (action features: ``{"a": {"id": "<class>"}}``),
the example's features become the shared context (namespace ``c``), and the
reward is 1 for the correct class and 0 otherwise.  A synthetic
"user segment x time-of-day" problem with categorical context and Bernoulli
rewards is included as the most service-like case.

Each policy is run with online progressive validation, exactly like the
service does it: build the DSJSON event, predict a PMF, sample an action with a
seeded RNG, then learn from the logged event (cost = -reward, logged
probability).  The reported reward of an event is the expected reward of the
policy's PMF on that event, sum_a pmf(a) * r(x, a), which is the value of the
exploring policy with the action-sampling noise removed.

MABWiser's LinUCB (a per-arm ridge regression on the dense context, greedy on
the UCB) is run on the same streams as a quality and speed reference.

Usage::

    python bench/policy_comparison.py            # full run (~4-5 min idle 2 cores)
    python bench/policy_comparison.py --quick    # smoke run (< 1 minute)
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import sys
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
from sklearn.datasets import (
    load_breast_cancer,
    load_digits,
    load_iris,
    load_wine,
    make_classification,
)

from personalize.sampling import squarecb_scale

# --------------------------------------------------------------------------
# Candidate policies.  Every string is passed to vowpal_wabbit_next.Workspace
# (plus "--quiet").  Context namespace is "c", action namespace is "a", so
# "-q ca" crosses context features with the action id -- exactly what the
# service's default "-q ca" does, because the service logs every context
# namespace as "c_<name>" and every action namespace as "a_<name>"; "-q ::"
# crosses all namespace pairs (what Personalizer uses by default).
# --------------------------------------------------------------------------

PERSONALIZER_DOC = "--cb_explore_adf --epsilon 0.2 --power_t 0 -l 0.001 --cb_type mtr"

CANDIDATES: dict[str, str] = {
    # Personalizer's documented example, without and with "-q ::" (its default).
    "personalizer_doc": PERSONALIZER_DOC,
    "personalizer_doc_q::": PERSONALIZER_DOC + " -q ::",
    # No interactions: shared context cancels out, this is a context-free MAB.
    "eps0.2_noq": "--cb_explore_adf --epsilon 0.2 --cb_type mtr",
    # epsilon-greedy, VW default learning rate schedule (-l 0.5, power_t 0.5).
    "eps0.2_qca": "--cb_explore_adf --epsilon 0.2 --cb_type mtr -q ca",
    "eps0.05_qca": "--cb_explore_adf --epsilon 0.05 --cb_type mtr -q ca",
    "eps0.05_q::": "--cb_explore_adf --epsilon 0.05 --cb_type mtr -q ::",
    # epsilon-greedy, learning-rate sweep, explicit context x action pairs.
    "eps0.05_qca_l1": "--cb_explore_adf --epsilon 0.05 --cb_type mtr -q ca -l 1",
    "eps0.05_qca_l2": "--cb_explore_adf --epsilon 0.05 --cb_type mtr -q ca -l 2",
    "eps0.05_qca_l5": "--cb_explore_adf --epsilon 0.05 --cb_type mtr -q ca -l 5",
    "eps0.02_qca_l2": "--cb_explore_adf --epsilon 0.02 --cb_type mtr -q ca -l 2",
    "eps0.1_qca_l2": "--cb_explore_adf --epsilon 0.1 --cb_type mtr -q ca -l 2",
    # epsilon-greedy, learning-rate sweep, namespace-agnostic "-q ::".
    # constant learning rates (power_t 0), like Personalizer; the first one was
    # the service's provisional default (with exploration 0.05).
    "eps0.05_q::_l0.01_pt0": "--cb_explore_adf --epsilon 0.05 --cb_type mtr -q :: -l 0.01 --power_t 0",
    "eps0.05_q::_l0.1_pt0": "--cb_explore_adf --epsilon 0.05 --cb_type mtr -q :: -l 0.1 --power_t 0",
    "eps0.05_q::_l1": "--cb_explore_adf --epsilon 0.05 --cb_type mtr -q :: -l 1",
    "eps0.05_q::_l2": "--cb_explore_adf --epsilon 0.05 --cb_type mtr -q :: -l 2",
    "eps0.05_q::_l5": "--cb_explore_adf --epsilon 0.05 --cb_type mtr -q :: -l 5",
    "eps0.02_q::_l2": "--cb_explore_adf --epsilon 0.02 --cb_type mtr -q :: -l 2",
    "eps0.1_q::_l2": "--cb_explore_adf --epsilon 0.1 --cb_type mtr -q :: -l 2",
    "eps0.2_q::_l2": "--cb_explore_adf --epsilon 0.2 --cb_type mtr -q :: -l 2",
    # cost estimators (mtr above)
    "eps0.05_q::_l2_ips": "--cb_explore_adf --epsilon 0.05 --cb_type ips -q :: -l 2",
    "eps0.05_q::_l2_dr": "--cb_explore_adf --epsilon 0.05 --cb_type dr -q :: -l 2",
    # softmax (larger lambda = greedier); softmax ignores --epsilon
    "softmax_l10_qca": "--cb_explore_adf --softmax --lambda 10 -q ca",
    "softmax_l50_qca": "--cb_explore_adf --softmax --lambda 50 -q ca",
    "softmax_l50_q::_l2": "--cb_explore_adf --softmax --lambda 50 -q :: -l 2",
    # bagging (bootstrap Thompson-like)
    "bag5_qca": "--cb_explore_adf --bag 5 --cb_type mtr -q ca",
    "bag5_eps0.05_q::_l2": "--cb_explore_adf --bag 5 --epsilon 0.05 --cb_type mtr -q :: -l 2",
    # SquareCB (inverse gap weighting); default gamma_scale 10, gamma_exponent 0.5.
    # NB: "--squarecb --epsilon x" silently behaves like plain epsilon-greedy.
    "squarecb_qca": "--cb_explore_adf --squarecb --cb_type mtr -q ca",
    "squarecb_qca_l2": "--cb_explore_adf --squarecb --cb_type mtr -q ca -l 2",
    "squarecb_g1000_ge0_qca": "--cb_explore_adf --squarecb --gamma_scale 1000 --gamma_exponent 0 --cb_type mtr -q ca",
    "squarecb_q::": "--cb_explore_adf --squarecb --cb_type mtr -q ::",
    "squarecb_q::_l2": "--cb_explore_adf --squarecb --cb_type mtr -q :: -l 2",
    # The service mixes a uniform floor into any policy's PMF (setting `exploration`):
    "squarecb_q::_l2_floor0.02": "--cb_explore_adf --squarecb --cb_type mtr -q :: -l 2 | floor 0.02",
    "squarecb_q::_l2_floor0.05": "--cb_explore_adf --squarecb --cb_type mtr -q :: -l 2 | floor 0.05",
    "squarecb_qca_l2_floor0.02": "--cb_explore_adf --squarecb --cb_type mtr -q ca -l 2 | floor 0.02",
    # ... and SquareCB's gamma scaled by K/5 above 5 actions (setting squarecb_actions; the default):
    "squarecb_qca_l2_floor0.02_k5": "--cb_explore_adf --squarecb --cb_type mtr -q ca -l 2 | floor 0.02 | squarecb_actions 5",
    "squarecb_qca_l2_floor0.02_k10": "--cb_explore_adf --squarecb --cb_type mtr -q ca -l 2 | floor 0.02 | squarecb_actions 10",
    # MTR's importance weight 1/p capped (--clip_p 1: every logged event weighs 1, as in LinUCB's
    # ridge fit); less SquareCB exploration (gamma_scale 100). See docs/notes/vw-gap.md.
    "squarecb_qca_l2_clip1_floor0.02": "--cb_explore_adf --squarecb --cb_type mtr -q ca -l 2 --clip_p 1 | floor 0.02",
    "squarecb_g100_qca_l2_floor0.02": "--cb_explore_adf --squarecb --gamma_scale 100 --cb_type mtr -q ca -l 2 | floor 0.02",
    "squarecb_g100_qca_l2_clip1_floor0.02":
        "--cb_explore_adf --squarecb --gamma_scale 100 --cb_type mtr -q ca -l 2 --clip_p 1 | floor 0.02",
    "squarecb_g100_qca_l1_clip1_floor0.02":
        "--cb_explore_adf --squarecb --gamma_scale 100 --cb_type mtr -q ca -l 1 --clip_p 1 | floor 0.02",
    # online cover
    "cover3_qca": "--cb_explore_adf --cover 3 -q ca",
}

QUICK_CANDIDATES: list[str] = [
    "personalizer_doc",
    "personalizer_doc_q::",
    "eps0.05_q::",
    "eps0.05_qca_l2",
    "eps0.05_q::_l2",
    "eps0.02_q::_l2",
    "squarecb_qca_l2",
    "squarecb_q::_l2",
    "squarecb_qca_l2_floor0.02",
    "squarecb_qca_l2_floor0.02_k5",
]

# The service's requirements for its default policy (see docs/learning-policy.md):
# a guaranteed exploration floor usable for off-policy evaluation, and
# interactions that work whatever namespace names the caller uses.
MIN_PROB_FLOOR = 1e-3
NAMESPACE_AGNOSTIC = ("-q ::", "-q ca")  # the service's namespace groups make "-q ca" name-independent

# alpha=1.0 (MABWiser's default) scored lower than 0.25 in a trial run (mean 0.805 vs 0.838).
LINUCB_ALPHAS: dict[str, float] = {"linucb_a0.25 (mabwiser)": 0.25}
QUICK_LINUCB = ["linucb_a0.25 (mabwiser)"]


# --------------------------------------------------------------------------
# Problems
# --------------------------------------------------------------------------


@dataclass
class Problem:
    """A contextual-bandit problem derived from a dataset.

    ``contexts_json[i]`` is the DSJSON ``"c"`` object (without ``_multi``) of
    example i, ``dense[i]`` the same context as a dense vector (for LinUCB) and
    ``reward_prob[i, k]`` the probability that action k pays reward 1.
    """

    name: str
    contexts_json: list[str]
    dense: np.ndarray
    reward_prob: np.ndarray

    @property
    def n_actions(self) -> int:
        return int(self.reward_prob.shape[1])

    @property
    def n_examples(self) -> int:
        return int(self.reward_prob.shape[0])


def _from_classification(name: str, x: np.ndarray, y: np.ndarray) -> Problem:
    """Supervised-to-bandit conversion with standardized numeric features."""
    x = np.asarray(x, dtype=np.float64)
    std = x.std(axis=0)
    std[std == 0] = 1.0
    xs = (x - x.mean(axis=0)) / std
    classes = np.unique(y)
    y_idx = np.searchsorted(classes, y)
    reward = np.zeros((len(y), len(classes)))
    reward[np.arange(len(y)), y_idx] = 1.0
    contexts = []
    for row in xs:
        feats = {f"f{j}": round(float(v), 4) for j, v in enumerate(row) if v != 0.0}
        contexts.append(json.dumps({"c": feats}, separators=(",", ":")))
    dense = np.hstack([xs, np.ones((len(xs), 1))])  # bias column for LinUCB
    return Problem(name, contexts, dense, reward)


def _segments_problem(n: int = 3000, seed: int = 7) -> Problem:
    """Categorical context (segment x time-of-day), 8 actions, Bernoulli rewards.

    logit(p(reward | segment, tod, action)) = 2*u[segment, a] + v[tod, a] - 1.5,
    so every context has one best action, determined by both features.
    """
    rng = np.random.default_rng(seed)
    n_seg, tods, n_act = 12, ["morning", "afternoon", "evening", "night"], 8
    u = rng.normal(size=(n_seg, n_act))
    v = rng.normal(size=(len(tods), n_act))
    seg = rng.integers(0, n_seg, size=n)
    tod = rng.integers(0, len(tods), size=n)
    logits = 2.0 * u[seg] + v[tod] - 1.5
    prob = 1.0 / (1.0 + np.exp(-logits))
    contexts = [
        json.dumps({"c": {"segment": f"s{s}", "tod": tods[t]}}, separators=(",", ":"))
        for s, t in zip(seg, tod)
    ]
    dense = np.zeros((n, n_seg + len(tods) + 1))
    dense[np.arange(n), seg] = 1.0
    dense[np.arange(n), n_seg + tod] = 1.0
    dense[:, -1] = 1.0
    return Problem("segments", contexts, dense, prob)


def _many_classes_problem() -> Problem:
    """make_classification with 12 classes, 20 features."""
    x, y = make_classification(
        n_samples=3000,
        n_features=20,
        n_informative=12,
        n_redundant=4,
        n_classes=12,
        n_clusters_per_class=1,
        class_sep=1.5,
        random_state=0,
    )
    return _from_classification("synth12", x, y)


PROBLEM_BUILDERS: dict[str, Callable[[], Problem]] = {
    "iris": lambda: _from_classification("iris", *load_iris(return_X_y=True)),
    "wine": lambda: _from_classification("wine", *load_wine(return_X_y=True)),
    "breast": lambda: _from_classification("breast", *load_breast_cancer(return_X_y=True)),
    "digits": lambda: _from_classification("digits", *load_digits(return_X_y=True)),
    "synth12": _many_classes_problem,
    "segments": _segments_problem,
}

_PROBLEM_CACHE: dict[str, Problem] = {}


def get_problem(name: str) -> Problem:
    """Build (once per process) and return a problem."""
    if name not in _PROBLEM_CACHE:
        _PROBLEM_CACHE[name] = PROBLEM_BUILDERS[name]()
    return _PROBLEM_CACHE[name]


def make_stream(n_examples: int, min_events: int, seed: int) -> np.ndarray:
    """Concatenate shuffled passes over the data until at least min_events."""
    rng = np.random.default_rng(10_000 + seed)
    passes = max(1, math.ceil(min_events / n_examples))
    return np.concatenate([rng.permutation(n_examples) for _ in range(passes)])


# --------------------------------------------------------------------------
# Runners
# --------------------------------------------------------------------------


@dataclass
class RunResult:
    """Outcome of one (policy, problem, seed) run."""

    policy: str
    problem: str
    seed: int
    mean_reward: float
    last20_reward: float
    min_prob: float
    seconds: float
    events: int


def run_vw(policy: str, args: str, problem: Problem, stream: np.ndarray, seed: int) -> RunResult:
    """Progressive validation of one VW policy over one stream."""
    import vowpal_wabbit_next as vw

    args, _, k_spec = args.partition("| squarecb_actions ")
    args, _, floor_spec = args.partition("| floor ")
    floor = float(floor_spec) if floor_spec else 0.0  # the service's uniform exploration floor
    k_ref = int(k_spec) if k_spec else 0  # the service's squarecb_actions (0: VW's SquareCB as is)
    workspace = vw.Workspace(args.split() + ["--quiet"])
    parser = vw.DSJsonFormatParser(workspace)
    rng = np.random.default_rng(seed)
    k_actions = problem.n_actions
    multi = json.dumps([{"a": {"id": str(k)}} for k in range(k_actions)], separators=(",", ":"))
    rewards = np.empty(len(stream))
    min_prob = 1.0
    start = time.perf_counter()
    for t, i in enumerate(stream):
        context = problem.contexts_json[i][:-1] + ',"_multi":' + multi + "}"
        prediction = workspace.predict_one(parser.parse_json('{"c":' + context + "}"))
        pmf = np.zeros(k_actions)
        for action, prob in prediction:
            pmf[action] = prob
        pmf = pmf / pmf.sum()
        if 0 < k_ref < k_actions:
            pmf = np.array(squarecb_scale(list(pmf), k_actions / k_ref))
        pmf = (1.0 - floor) * pmf + floor / k_actions
        chosen = int(rng.choice(k_actions, p=pmf))
        reward = float(rng.random() < problem.reward_prob[i, chosen])
        others = [k for k in range(k_actions) if k != chosen]
        event = (
            f'{{"_label_cost":{-reward},"_label_probability":{pmf[chosen]:.6f},'
            f'"_label_Action":{chosen + 1},"_labelIndex":{chosen},'
            f'"a":{json.dumps([chosen + 1] + [k + 1 for k in others])},'
            f'"p":{json.dumps([round(float(pmf[chosen]), 6)] + [round(float(pmf[k]), 6) for k in others])},'
            f'"c":{context}}}'
        )
        workspace.learn_one(parser.parse_json(event))
        rewards[t] = float(pmf @ problem.reward_prob[i])
        min_prob = min(min_prob, float(pmf.min()))
    seconds = time.perf_counter() - start
    tail = rewards[int(0.8 * len(rewards)) :]
    return RunResult(policy, problem.name, seed, float(rewards.mean()), float(tail.mean()), min_prob, seconds, len(stream))


def run_linucb(policy: str, alpha: float, problem: Problem, stream: np.ndarray, seed: int) -> RunResult:
    """Progressive validation of MABWiser LinUCB (deterministic argmax of the UCB)."""
    from mabwiser.mab import MAB, LearningPolicy

    rng = np.random.default_rng(seed)
    arms = list(range(problem.n_actions))
    mab = MAB(arms=arms, learning_policy=LearningPolicy.LinUCB(alpha=alpha), seed=seed)
    rewards = np.empty(len(stream))
    start = time.perf_counter()
    for t, i in enumerate(stream):
        x = problem.dense[i : i + 1]
        if t == 0:
            chosen = int(rng.integers(problem.n_actions))  # nothing learned yet
        else:
            chosen = int(mab.predict(x))
        reward = float(rng.random() < problem.reward_prob[i, chosen])
        if t == 0:
            mab.fit(decisions=[chosen], rewards=[reward], contexts=x)
        else:
            mab.partial_fit(decisions=[chosen], rewards=[reward], contexts=x)
        rewards[t] = problem.reward_prob[i, chosen]
    seconds = time.perf_counter() - start
    tail = rewards[int(0.8 * len(rewards)) :]
    return RunResult(policy, problem.name, seed, float(rewards.mean()), float(tail.mean()), 0.0, seconds, len(stream))


def run_job(job: tuple[str, str, int, int]) -> RunResult:
    """Worker entry point: (policy name, problem name, seed, min_events)."""
    policy, problem_name, seed, min_events = job
    problem = get_problem(problem_name)
    stream = make_stream(problem.n_examples, min_events, seed)
    if policy in LINUCB_ALPHAS:
        return run_linucb(policy, LINUCB_ALPHAS[policy], problem, stream, seed)
    return run_vw(policy, CANDIDATES[policy], problem, stream, seed)


# --------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------


def summarize(results: list[RunResult], policies: list[str], problems: list[str]) -> list[dict]:
    """Aggregate runs into one row per policy, sorted by average rank."""
    mean = {(p, d): float(np.mean([r.mean_reward for r in results if r.policy == p and r.problem == d])) for p in policies for d in problems}
    # rank per problem (1 = best; ties get the average rank)
    ranks: dict[str, list[float]] = {p: [] for p in policies}
    for d in problems:
        values = np.array([mean[(p, d)] for p in policies])
        for p, v in zip(policies, values):
            ranks[p].append(1.0 + float(np.sum(values > v + 1e-12)) + 0.5 * float(np.sum(np.abs(values - v) <= 1e-12) - 1))
    rows = []
    for p in policies:
        runs = [r for r in results if r.policy == p]
        seed_sd = [float(np.std([r.mean_reward for r in runs if r.problem == d])) for d in problems]
        rows.append(
            {
                "policy": p,
                "args": CANDIDATES.get(p, f"LinUCB alpha={LINUCB_ALPHAS.get(p)}"),
                "per_problem": {d: mean[(p, d)] for d in problems},
                "mean": float(np.mean([mean[(p, d)] for d in problems])),
                "last20": float(np.mean([np.mean([r.last20_reward for r in runs if r.problem == d]) for d in problems])),
                "avg_rank": float(np.mean(ranks[p])),
                "seed_sd": float(np.mean(seed_sd)),
                "min_prob": float(min(r.min_prob for r in runs)),
                "us_per_event": 1e6 * sum(r.seconds for r in runs) / sum(r.events for r in runs),
            }
        )
    rows.sort(key=lambda row: (row["avg_rank"], -row["mean"]))
    return rows


def format_table(rows: list[dict], problems: list[str]) -> str:
    """Render the summary as a Markdown table."""
    header = ["policy", *problems, "mean", "last20%", "avg rank", "min p", "µs/event"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in rows:
        cells = [f"`{row['policy']}`"]
        cells += [f"{row['per_problem'][d]:.3f}" for d in problems]
        cells += [f"{row['mean']:.3f}", f"{row['last20']:.3f}", f"{row['avg_rank']:.1f}", f"{row['min_prob']:.1e}", f"{row['us_per_event']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="few policies, 1 seed, short streams (< 1 min)")
    ap.add_argument("--seeds", type=int, default=None, help="number of seeds (default 3, quick 1)")
    ap.add_argument("--min-events", type=int, default=None, help="events per stream (default 2500, quick 600)")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes")
    ap.add_argument("--json", type=str, default=None, help="also write the summary rows to this file")
    ap.add_argument("--only", type=str, default=None, help="comma-separated policy names to run (default: all)")
    ns = ap.parse_args(argv)

    seeds = ns.seeds if ns.seeds is not None else (1 if ns.quick else 3)
    min_events = ns.min_events if ns.min_events is not None else (600 if ns.quick else 2500)
    vw_policies = QUICK_CANDIDATES if ns.quick else list(CANDIDATES)
    ref_policies = QUICK_LINUCB if ns.quick else list(LINUCB_ALPHAS)
    policies = vw_policies + ref_policies
    if ns.only:
        wanted = [name.strip() for name in ns.only.split(",")]
        unknown = [name for name in wanted if name not in CANDIDATES and name not in LINUCB_ALPHAS]
        if unknown:
            ap.error(f"unknown policies: {', '.join(unknown)}")
        policies = wanted
    problems = list(PROBLEM_BUILDERS)

    jobs = [(p, d, s, min_events) for s in range(seeds) for d in problems for p in policies]
    # Slowest jobs first for better load balancing.
    jobs.sort(key=lambda j: (j[0] not in LINUCB_ALPHAS, "bag" not in j[0], "::" not in j[0]))
    print(f"{len(policies)} policies x {len(problems)} problems x {seeds} seeds, >= {min_events} events/stream, {ns.jobs} jobs", file=sys.stderr)
    start = time.perf_counter()
    if ns.jobs > 1:
        with multiprocessing.Pool(ns.jobs) as pool:
            results = pool.map(run_job, jobs, chunksize=1)
    else:
        results = [run_job(j) for j in jobs]
    elapsed = time.perf_counter() - start

    rows = summarize(results, policies, problems)
    print(format_table(rows, problems))
    print()
    print("mean = mean over problems of the progressive expected reward; last20% = same on the last 20% of each stream;")
    print("avg rank = mean over problems of the rank by mean reward (1 = best); min p = smallest action probability seen;")
    print(f"µs/event = wall time per predict+sample+learn incl. DSJSON build/parse. Seed noise (avg sd across seeds) of the winner: {rows[0]['seed_sd']:.4f}")
    print()
    for row in rows:
        print(f"{row['policy']:>26}: {row['args']}")
    print()
    print(f"best overall: {rows[0]['policy']}")
    eligible = [r for r in rows if r["policy"] in CANDIDATES and r["min_prob"] >= MIN_PROB_FLOOR and any(q in r["args"] for q in NAMESPACE_AGNOSTIC)]
    print(f"best eligible for the service default (min p >= {MIN_PROB_FLOOR:g} and {' or '.join(NAMESPACE_AGNOSTIC)}):")
    for row in eligible[:3]:
        print(f"  {row['policy']}: {row['args']}  (mean {row['mean']:.3f}, avg rank {row['avg_rank']:.1f}, min p {row['min_prob']:.4f})")
    print(f"\ntotal wall time {elapsed:.1f}s", file=sys.stderr)
    if ns.json:
        with open(ns.json, "w") as fh:
            json.dump({"seeds": seeds, "min_events": min_events, "rows": rows}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
