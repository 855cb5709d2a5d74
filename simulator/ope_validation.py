"""Off-policy evaluation checked against ground truth.

The service logs decisions in the simulated world under one setting (the logging policy). The
first ``train`` logged events are a training batch; the rest are the evaluation log. Every
*fixed* target policy pi is estimated from the evaluation log with every estimator and compared
with its true value on the same logged contexts, which the simulator knows exactly:
``truth = mean_i sum_a pi(a | x_i) * q(x_i, a)``, with ``q`` the true click probability of
action ``a`` in the top slot. No live run of the target is needed, and estimate and truth
refer to the same contexts, so the difference is the estimator's error alone.

Fixed targets: uniform; the logging policy itself (its logged probabilities); popularity-greedy
(most-rated candidate); the oracle softened by ``ORACLE_EPSILON``; and frozen VW policies
(``FROZEN_TARGETS``) trained on the training batch and then only predicting. Optionally, VW
policies that keep *learning during the replay* (``LEARNING_TARGETS``) are a different
estimand: their truth uses their own per-event probabilities at replay time.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from personalize.db import make_engine, make_sessionmaker
from personalize.dsjson import event_line
from personalize.evaluation.estimators import ESTIMATORS, Logged, bootstrap_ci, estimate
from personalize.evaluation.replay import (LoggedEvent, frozen_policy, logged_for, parse_dsjson, policy_args,
                                           replay_policy, reward_model)
from personalize.store import iter_events
from simulator.config import SimConfig
from simulator.items import build_catalog
from simulator.policies import Service
from simulator.transport import InProcess, SimClock
from simulator.users import build_population
from simulator.world import Traffic, World

__all__ = ["GroundTruthLog", "TargetResult", "log_with_truth", "validate", "format_report", "summary",
           "FROZEN_TARGETS", "LEARNING_TARGETS", "ORACLE_EPSILON"]

#: Frozen VW policies: the service's default arguments and a few alternatives (explorer included).
FROZEN_TARGETS: tuple[str, ...] = (
    "--cb_explore_adf --cb_type mtr -q :: --power_t 0 -l 0.01 --epsilon 0.2",
    "--cb_explore_adf --cb_type mtr -q :: --power_t 0 -l 0.01 --epsilon 0.5",
    "--cb_explore_adf --cb_type dr -q :: --epsilon 0.3",
    "--cb_explore_adf --cb_type ips --epsilon 0.3",
    "--cb_explore_adf --squarecb --gamma_scale 10 -q ::",
)
#: VW policies replayed while learning (progressive validation): a different estimand, see above.
LEARNING_TARGETS: tuple[str, ...] = ("--cb_explore_adf --cb_type mtr -q :: --power_t 0 -l 0.01 --epsilon 0.2",)
#: Share of the softened oracle's choices made uniformly at random.
ORACLE_EPSILON = 0.3


@dataclass
class GroundTruthLog:
    events: list[LoggedEvent]
    attractions: list[np.ndarray]  # true click probability of every action, by action index
    popularity: list[np.ndarray]  # catalog popularity (rating count) of every action, by action index

    def split(self, train: int) -> tuple["GroundTruthLog", "GroundTruthLog"]:
        return (GroundTruthLog(self.events[:train], self.attractions[:train], self.popularity[:train]),
                GroundTruthLog(self.events[train:], self.attractions[train:], self.popularity[train:]))


@dataclass
class TargetResult:
    policy: str
    kind: str  # 'fixed' or 'learning'
    truth: float
    estimates: dict[str, float]
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    floor: float = float("nan")  # relative standard error of DR with a perfect reward model (see dr_floor)

    def relative_error(self, name: str) -> float:
        return abs(self.estimates[name] - self.truth) / self.truth


def log_with_truth(config: SimConfig, events: int, folder: Path, logging: dict | None = None,
                   progress: bool = False) -> GroundTruthLog:
    """Drive the service (inline actions) for ``events`` visits; return its DSJSON log and the truth.

    The last few events (fewer than ``run.learn_every``) are not learned yet and not in the log.
    """
    catalog = build_catalog(config.items, config.users, config.seed)
    population = build_population(config.users, config.seed)
    world = World(config, catalog, population)
    traffic = Traffic(config, catalog, len(population))
    clock = SimClock()
    overrides = {"learn_every": config.run.learn_every, **(logging or {})}
    transport = InProcess(folder / "logging", overrides, clock)
    policy = Service("logging", transport, catalog, f"ope{config.seed}", consumed_flag=config.users.consumed_flag)
    truth: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    try:
        for step in tqdm(range(events), disable=not progress, unit="event", desc="logging"):
            clock.now += 1.0
            visit = traffic.visit(step)
            attractions = world.begin(visit)
            ranking, _ = policy.rank(visit, world, attractions)
            outcome = world.respond(visit, ranking, attractions)
            policy.learn(visit, world, ranking, outcome)
            truth[policy.event_id(visit)] = (attractions, catalog.popularity[visit.candidates])
    finally:
        transport.close()
    engine = make_engine(f"sqlite:///{folder / 'logging' / 'service.db'}")
    try:  # read the service's log (the events learned so far, exactly as learned), as `personalize evaluate` does
        with make_sessionmaker(engine)() as session:
            pairs = [(event_line(e, e.learned_reward), e.event_id) for e in iter_events(session)]
    finally:
        engine.dispose()
    logged = list(parse_dsjson(line for line, _ in pairs))
    ids = [event_id for _, event_id in pairs]
    return GroundTruthLog(logged, [truth[i][0] for i in ids], [truth[i][1] for i in ids])


def _one_hot(n: int, index: int) -> np.ndarray:
    out = np.zeros(n)
    out[index] = 1.0
    return out


def _vw_target(task: tuple[str, str, int, str]) -> np.ndarray:
    """Worker: one VW target's probabilities on the evaluation events (read from the DSJSON file)."""
    path, kind, train, args = task
    with open(path, encoding="utf-8") as fh:
        events = list(parse_dsjson(fh))
    if kind == "fixed":
        pmfs = frozen_policy(events[:train], events[train:], policy_args(args))
    else:
        pmfs = replay_policy(events[train:], policy_args(args))
    return np.array(pmfs)


def _reward_model(task: tuple[str, int]) -> np.ndarray:
    path, train = task
    with open(path, encoding="utf-8") as fh:
        events = list(parse_dsjson(fh))
    return np.array(reward_model(events[train:]))


def validate(log: GroundTruthLog, folder: Path, train: int, frozen: Sequence[str] = FROZEN_TARGETS,
             learning: Sequence[str] = LEARNING_TARGETS, reps: int = 200, seed: int = 0, jobs: int = 1,
             oracle_epsilon: float = ORACLE_EPSILON) -> list[TargetResult]:
    """Every target's true value beside every estimator's estimate and 95% bootstrap interval.

    The first ``train`` events train the frozen VW targets; the rest are the evaluation log.
    VW work (each target, the reward model) runs in ``jobs`` spawned processes.
    """
    path = folder / "events.dsjson"
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(e.line + "\n" for e in log.events)
    _, test = log.split(train)
    tasks = [(str(path), "fixed", train, args) for args in frozen] + [
        (str(path), "learning", train, args) for args in learning]
    if jobs > 1:  # spawn, not fork: a forked child can inherit locks held by the parent's threads and hang
        with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            q_future = pool.submit(_reward_model, (str(path), train))
            vw_pmfs = list(pool.map(_vw_target, tasks))
            q = list(q_future.result())
    else:
        q = list(_reward_model((str(path), train)))
        vw_pmfs = [_vw_target(task) for task in tasks]
    targets: list[tuple[str, str, list[np.ndarray]]] = [
        ("uniform", "fixed", [np.full(len(a), 1.0 / len(a)) for a in test.attractions]),
        ("logging policy", "fixed", [e.logged_pmf for e in test.events]),
        ("popularity-greedy", "fixed", [_one_hot(len(p), int(np.argmax(p))) for p in test.popularity]),
        (f"oracle, epsilon {oracle_epsilon:g}", "fixed",
         [(1 - oracle_epsilon) * _one_hot(len(a), int(np.argmax(a))) + oracle_epsilon / len(a)
          for a in test.attractions]),
    ]
    targets += [(f"frozen VW {args}", "fixed", list(p)) for args, p in zip(frozen, vw_pmfs)]
    targets += [(f"learning VW {args}", "learning", list(p)) for args, p in zip(learning, vw_pmfs[len(frozen):])]
    results = []
    for name, kind, pmfs in targets:
        truth = float(np.mean([p @ a for p, a in zip(pmfs, test.attractions)]))
        data = logged_for(test.events, pmfs, q)
        results.append(TargetResult(name, kind, truth, estimate(data),
                                    bootstrap_ci(data, reps=reps, seed=seed) if reps else {},
                                    dr_floor(test, pmfs, truth)))
    return results


def always_best(log: GroundTruthLog, reps: int = 200, seed: int = 0, level: float = 0.95) -> TargetResult:
    """The oracle (deterministic) on the whole log, with the cross-fitted reward model: for tests."""
    pmfs = [_one_hot(len(a), int(np.argmax(a))) for a in log.attractions]
    data: Logged = logged_for(log.events, pmfs, reward_model(log.events))
    truth = float(np.mean([a.max() for a in log.attractions]))
    return TargetResult("always-best", "fixed", truth, estimate(data),
                        bootstrap_ci(data, reps=reps, seed=seed, level=level))


def dr_floor(log: GroundTruthLog, pmfs: Sequence[np.ndarray], truth: float) -> float:
    """Relative standard error DR would have with the true click probabilities as its reward model.

    ``sqrt(mean_i sum_a pi^2 / mu * q (1 - q) / n) / truth``: the click noise seen through the
    importance weights, which no reward model removes. An error of 2-3x this is luck, not bias.
    """
    per_event = [float(np.sum(p * p / e.logged_pmf * a * (1 - a))) for p, e, a in zip(pmfs, log.events, log.attractions)]
    return float(np.sqrt(np.mean(per_event) / len(per_event)) / truth)


def summary(results: Sequence[TargetResult], kind: str = "fixed") -> dict[str, tuple[float, float]]:
    """Per estimator: (max, mean) relative error over the targets of one kind."""
    chosen = [r for r in results if r.kind == kind]
    return {name: (max(r.relative_error(name) for r in chosen), float(np.mean([r.relative_error(name) for r in chosen])))
            for name in ESTIMATORS} if chosen else {}


def format_report(results: Sequence[TargetResult]) -> str:
    """Markdown table: truth, then each estimator's relative error (and whether the 95% interval covers the truth)."""
    names = list(ESTIMATORS)
    lines = ["| target policy | truth | DR s.e. floor | " + " | ".join(names) + " |",
             "|---|---:|---:|" + "---:|" * len(names)]
    for r in results:
        cells = []
        for n in names:
            low, high = r.intervals.get(n, (np.nan, np.nan))
            miss = "" if not r.intervals or low <= r.truth <= high else "*"
            cells.append(f"{100 * r.relative_error(n):.1f}%{miss}")
        lines.append(f"| {r.policy} | {r.truth:.4f} | {100 * r.floor:.1f}% | " + " | ".join(cells) + " |")
    for kind in ("fixed", "learning"):
        s = summary(results, kind)
        if s:
            lines.append(f"| **max / mean, {kind} targets** | | | "
                         + " | ".join(f"{100 * s[n][0]:.1f}% / {100 * s[n][1]:.1f}%" for n in names) + " |")
    lines.append("")
    lines.append("relative error |estimate - truth| / truth; * = the 95% bootstrap interval misses the truth; "
                 "DR s.e. floor = relative standard error of DR with a perfect reward model")
    return "\n".join(lines)
