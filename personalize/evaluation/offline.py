"""Offline evaluations (Personalizer's "offline evaluation" jobs): what would other learning policies
have earned on the logged events, and which learning settings would have done best?

Every policy is scored on the same events with the estimators of ``estimators.py``; the reported
``expectedReward`` is SNIPS (self-normalized IPS: consistent whatever the reward model, bounded by the
reward range, low variance), the others travel beside it. Rows, as Personalizer reported them:

- **Online**: the policy that logged the events; its value is the observed mean reward (w = 1).
- **Baseline**: always the first action of the request (Personalizer's baseline).
- **Random**: uniform over the actions.
- **Custom**: each policy of the request, replayed from scratch through the log (``replay_policy``),
  served as the service would serve it (its SquareCB scaling and the exploration floor).
- **OfflineExperimentation**: with ``enablePolicyOptimization``, the best learning settings found by a
  coordinate search (exploration algorithm, cb_type, interactions, learning rate) starting from the
  policy in force, the request's policies included as candidates: so it is at least as good as each of
  them on the logs. Its gain over the policy in force (replayed the same way, so both start untrained)
  has a paired bootstrap interval: the safeguard of auto-optimization (``personalize.evaluation.auto``).

Per-policy time series are stored as sums per time bucket (``Buckets``) so ``GET /evaluations/{id}``
can aggregate any interval and window (Expanding/Rolling) without rerunning anything.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from personalize.config import Settings
from personalize.evaluation.estimators import Logged, bootstrap_ci, estimate, snips
from personalize.evaluation.replay import LoggedEvent, logged_for, replay_policy, reward_model
from personalize.ranker import Explorer

__all__ = ["PolicySpec", "run_evaluation", "candidate_policies", "timeseries", "BUCKET_CHOICES", "HEADLINE",
           "split_policy"]

#: The estimator reported as ``expectedReward``.
HEADLINE = "snips"
#: Base bucket widths (minutes) for stored time series: the smallest that keeps at most MAX_BUCKETS.
BUCKET_CHOICES = (5, 60, 360, 720, 1440)
MAX_BUCKETS = 2000
BOOTSTRAP_REPS = 200

Progress = Callable[[float], None]


@dataclass(frozen=True)
class PolicySpec:
    name: str
    arguments: str
    source: str = "Custom"  # Online | Baseline | Random | Custom | OfflineExperimentation


# -- learning settings as dimensions -------------------------------------------------------------------
_EXPLORATION_FLAGS = {"--squarecb": 0, "--gamma_scale": 1, "--gamma_exponent": 1, "--epsilon": 1, "--cover": 1,
                      "--bag": 1, "--first": 1, "--elim": 0, "--regcb": 0, "--regcbopt": 0, "--synthcover": 0,
                      "--softmax": 0, "--lambda": 1, "--psi": 1, "--nounif": 0, "--mellowness": 1}
_DIMENSIONS: dict[str, tuple[tuple[str, int], ...]] = {
    "exploration": tuple(_EXPLORATION_FLAGS.items()),
    "cb_type": (("--cb_type", 1),),
    "interactions": (("-q", 1), ("--quadratic", 1), ("--interactions", 1), ("--cubic", 1)),
    "learning_rate": (("-l", 1), ("--learning_rate", 1)),
}
#: The values the search tries per dimension.
SEARCH_SPACE: dict[str, tuple[str, ...]] = {
    "exploration": ("--squarecb", "--squarecb --gamma_scale 100", "--epsilon 0.05", "--epsilon 0.2"),
    "cb_type": ("--cb_type mtr", "--cb_type ips", "--cb_type dr"),
    "interactions": ("-q ca", "-q ::", "-q ca -q cc", ""),
    "learning_rate": ("-l 0.5", "-l 2", "-l 8"),
}


def split_policy(arguments: str) -> tuple[dict[str, str], str]:
    """(dimension -> its flags, the other flags) of a policy's arguments."""
    words = shlex.split(arguments)
    found: dict[str, list[str]] = {name: [] for name in _DIMENSIONS}
    rest: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        for name, flags in _DIMENSIONS.items():
            width = dict(flags).get(word)
            if width is not None:
                found[name].extend(words[i:i + 1 + width])
                i += 1 + width
                break
        else:
            if word != "--cb_explore_adf":
                rest.append(word)
            i += 1
    return {name: " ".join(v) for name, v in found.items()}, " ".join(rest)


def join_policy(dims: dict[str, str], rest: str) -> str:
    parts = ["--cb_explore_adf"] + [dims[name] for name in _DIMENSIONS if dims.get(name)] + ([rest] if rest else [])
    return " ".join(parts)


def candidate_policies(current: str, dimension: str) -> list[str]:
    """``current`` with one dimension set to each value of the search space."""
    dims, rest = split_policy(current)
    return [join_policy({**dims, dimension: value}, rest) for value in SEARCH_SPACE[dimension]]


# -- time buckets ----------------------------------------------------------------------------------------
def _bucket_minutes(times: np.ndarray) -> int:
    span = float(times.max() - times.min()) if len(times) else 0.0
    for minutes in BUCKET_CHOICES:
        if span / (minutes * 60) <= MAX_BUCKETS:
            return minutes
    return BUCKET_CHOICES[-1]


def _buckets(times: np.ndarray, data: Logged, seconds: int) -> list[list[float]]:
    """Per bucket: [start, n, sum w, sum w r, sum w^2, sum w^2 r, sum w^2 r^2] (enough for SNIPS and its variance)."""
    w = data.pi / data.mu
    r = data.reward
    keys = np.floor(times / seconds).astype(np.int64)
    out = []
    for key in np.unique(keys):
        m = keys == key
        wm, rm = w[m], r[m]
        out.append([float(key * seconds), int(m.sum()), float(wm.sum()), float((wm * rm).sum()), float((wm ** 2).sum()),
                    float((wm ** 2 * rm).sum()), float((wm ** 2 * rm ** 2).sum())])
    return out


def _snips_point(sums: np.ndarray) -> tuple[float, list[float]] | None:
    n, sw, swr, sw2, sw2r, sw2r2 = sums
    if n <= 0 or not sw * sw > 0:
        return None
    value = swr / sw
    variance = max(sw2r2 - 2 * value * sw2r + value * value * sw2, 0.0) / (sw * sw)  # delta method for a ratio
    half = 1.96 * math.sqrt(variance)
    return value, [value - half, value + half]


def timeseries(buckets: Sequence[Sequence[float]], base_minutes: int, start: float, end: float,
               interval_minutes: int, window: str) -> tuple[list[dict[str, Any]], int]:
    """The time series of one policy over [start, end): one point per interval, SNIPS with a 95% interval;
    ``Expanding`` accumulates from ``start``, ``Rolling`` uses each interval alone. Returns (points, the
    interval used: never finer than the stored buckets)."""
    step = max(interval_minutes, base_minutes) * 60
    width = base_minutes * 60  # a bucket overlapping the range counts (its events' exact times are not kept)
    rows = np.array([b for b in buckets if start < b[0] + width and b[0] < end], dtype=float).reshape(-1, 7)
    if not len(rows):
        return [], step // 60
    first = math.floor(start / step) * step if math.isfinite(start) else math.floor(rows[:, 0].min() / step) * step
    keys = np.floor((rows[:, 0] - first) / step).astype(np.int64)
    points = []
    total = np.zeros(6)
    for key in np.unique(keys):  # intervals without events have no point (nothing to estimate from)
        sums = rows[keys == key, 1:].sum(axis=0)
        total = total + sums if window == "Expanding" else sums
        point = _snips_point(total)
        if point is not None:
            points.append({"timeStamp": float(first + key * step), "expectedReward": float(point[0]),
                           "confidenceInterval": [float(v) for v in point[1]]})
    return points, step // 60


# -- the evaluation --------------------------------------------------------------------------------------
@dataclass
class _Scored:
    spec: PolicySpec
    data: Logged
    row: dict[str, Any] = field(default_factory=dict)


def _row(spec: PolicySpec, data: Logged, times: np.ndarray, bucket_seconds: int, seed: int) -> dict[str, Any]:
    estimates = estimate(data)
    intervals = bootstrap_ci(data, reps=BOOTSTRAP_REPS, seed=seed)
    return {
        "name": spec.name, "arguments": spec.arguments, "policySource": spec.source,
        "summary": {"expectedReward": estimates[HEADLINE], "confidenceInterval": list(intervals[HEADLINE])},
        "estimates": estimates, "intervals": {k: list(v) for k, v in intervals.items()},
        "buckets": _buckets(times, data, bucket_seconds),
    }


def _paired_gain(a: Logged, b: Logged, seed: int) -> dict[str, Any]:
    """SNIPS(a) - SNIPS(b) on the same events, with a paired percentile-bootstrap 95% interval."""
    rng = np.random.default_rng(seed)
    n = len(a)
    draws = []
    for _ in range(BOOTSTRAP_REPS):
        index = rng.integers(n, size=n)
        draws.append(snips(a.take(index)) - snips(b.take(index)))
    return {"estimate": snips(a) - snips(b), "confidenceInterval": [float(np.nanpercentile(draws, 2.5)),
                                                                   float(np.nanpercentile(draws, 97.5))]}


def run_evaluation(events: Sequence[LoggedEvent], times: Sequence[float], current: PolicySpec,
                   policies: Sequence[PolicySpec], optimize: bool, settings: Settings, progress: Progress = lambda f: None,
                   seed: int = 0) -> dict[str, Any]:
    """The evaluation's result document (stored as JSON). ``current``: the policy in force (the Online row)."""
    if not events:
        raise ValueError("no learned events in the time range; widen startTime..endTime or wait for rewards")
    t = np.asarray(times, dtype=float)
    bucket_minutes = _bucket_minutes(t)
    bucket_seconds = bucket_minutes * 60
    low, high = settings.reward_min, settings.reward_max
    q = reward_model(events, (low, high))
    progress(0.1)
    logged = [e.logged_pmf for e in events]
    fixed = [
        (PolicySpec(current.name, current.arguments, "Online"), logged),
        (PolicySpec("Baseline: first action", "", "Baseline"), [_one_hot(len(e.logged_pmf)) for e in events]),
        (PolicySpec("Random", "", "Random"), [np.full(len(e.logged_pmf), 1.0 / len(e.logged_pmf)) for e in events]),
    ]
    rows = [_row(spec, logged_for(events, pmfs, q), t, bucket_seconds, seed) for spec, pmfs in fixed]
    cache: dict[str, Logged] = {}
    planned = len(policies) + (1 + sum(len(v) for v in SEARCH_SPACE.values()) if optimize else 0)
    done = [0]

    refused: dict[str, str] = {}

    def score(arguments: str) -> Logged:
        key = " ".join(arguments.split())
        if key not in cache:
            args = Settings(learning_policy=key).vw_args
            explorer = Explorer.for_policy(args, settings.exploration, settings.squarecb_actions)
            cache[key] = logged_for(events, replay_policy(events, args, explorer), q)
            done[0] += 1
            progress(0.1 + 0.85 * min(done[0] / max(planned, 1), 1.0))
        return cache[key]

    def value(arguments: str) -> float:
        """SNIPS of a candidate; -inf for a combination VW refuses (e.g. SquareCB with --cb_type ips)."""
        try:
            v = snips(score(arguments))
        except RuntimeError as exc:
            refused[" ".join(arguments.split())] = str(exc)
            return -math.inf
        return v if math.isfinite(v) else -math.inf

    for spec in policies:
        rows.append(_row(spec, score(spec.arguments), t, bucket_seconds, seed))
    result: dict[str, Any] = {"events": len(events), "estimator": HEADLINE, "bucketMinutes": bucket_minutes,
                              "policies": rows, "optimalPolicy": None}
    if optimize:
        best = " ".join(current.arguments.split())
        for dimension in SEARCH_SPACE:
            for candidate in candidate_policies(best, dimension):
                if value(candidate) > value(best) + 1e-12:
                    best = candidate
        for spec in policies:  # the request's policies compete too: the optimum is at least as good as each
            if value(spec.arguments) > value(best) + 1e-12:
                best = " ".join(spec.arguments.split())
        optimal = PolicySpec("Optimized learning settings", best, "OfflineExperimentation")
        rows.append(_row(optimal, score(best), t, bucket_seconds, seed))
        result["optimalPolicy"] = optimal.name
        result["optimization"] = {
            "baseline": " ".join(current.arguments.split()),
            "gainOverCurrent": _paired_gain(score(best), score(current.arguments), seed),
            "candidates": sorted(({"arguments": k, "expectedReward": value(k)} for k in cache),
                                 key=lambda c: -c["expectedReward"]),
            "refused": refused,
        }
    progress(1.0)
    return result


def _one_hot(n: int) -> np.ndarray:
    pmf = np.zeros(n)
    pmf[0] = 1.0
    return pmf
