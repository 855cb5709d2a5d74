"""Off-policy evaluation checked against ground truth.

The service logs ``events`` decisions in the simulated world under one setting. Target policies
are then estimated from that log with every estimator, and compared with their true value on
the same decisions, which the simulator knows exactly: ``mean_i sum_a pi_i(a) * attraction_i(a)``.
Targets are VW learning policies replayed on the log (their probabilities come from the
replay itself) plus two fixed ones: the always-best policy and the uniform one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from personalize.db import make_engine, make_sessionmaker
from personalize.dsjson import event_line
from personalize.evaluation.estimators import ESTIMATORS, bootstrap_ci, estimate
from personalize.evaluation.replay import LoggedEvent, logged_for, parse_dsjson, policy_args, replay_policy, reward_model
from personalize.store import iter_events
from simulator.config import SimConfig
from simulator.items import build_catalog
from simulator.policies import Service
from simulator.transport import InProcess, SimClock
from simulator.users import build_population
from simulator.world import Traffic, World

__all__ = ["GroundTruthLog", "TargetResult", "log_with_truth", "validate", "format_report", "DEFAULT_TARGETS"]

#: VW learning policies estimated by default (``-q ::`` as in the service's default).
DEFAULT_TARGETS: tuple[str, ...] = (
    "--cb_explore_adf --cb_type mtr -q :: --power_t 0 -l 0.05 --epsilon 0.05",
    "--cb_explore_adf --cb_type mtr -q :: --power_t 0 -l 0.05 --epsilon 0.2",
    "--cb_explore_adf --cb_type ips -q :: --epsilon 0.1",
    "--cb_explore_adf --cb_type mtr --epsilon 0.1",
)


@dataclass
class GroundTruthLog:
    events: list[LoggedEvent]
    attractions: list[np.ndarray]  # true click probability of every action, by action index


@dataclass
class TargetResult:
    policy: str
    truth: float
    estimates: dict[str, float]
    intervals: dict[str, tuple[float, float]]

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
    policy = Service("logging", transport, catalog, f"ope{config.seed}")
    truth: dict[str, np.ndarray] = {}
    try:
        for step in tqdm(range(events), disable=not progress, unit="event", desc="logging"):
            clock.now += 1.0
            visit = traffic.visit(step)
            attractions = world.begin(visit)
            ranking, _ = policy.rank(visit, world, attractions)
            outcome = world.respond(visit, ranking, attractions)
            policy.learn(visit, world, ranking, outcome)
            truth[policy.event_id(visit)] = attractions
    finally:
        transport.close()
    engine = make_engine(f"sqlite:///{folder / 'logging' / 'service.db'}")
    try:  # read the service's log (the events learned so far, exactly as learned), as `personalize evaluate` does
        with make_sessionmaker(engine)() as session:
            pairs = [(event_line(e, e.learned_reward), e.event_id) for e in iter_events(session)]
    finally:
        engine.dispose()
    logged = list(parse_dsjson(line for line, _ in pairs))
    return GroundTruthLog(logged, [truth[event_id] for _, event_id in pairs])


def validate(log: GroundTruthLog, targets: Sequence[str] = DEFAULT_TARGETS, reps: int = 200,
             seed: int = 0) -> list[TargetResult]:
    """Every target's true value beside every estimator's estimate and interval."""
    q = reward_model(log.events)
    pmfs: dict[str, list[np.ndarray]] = {}
    for target in targets:
        pmfs[target] = replay_policy(log.events, policy_args(target))
    pmfs["always-best"] = [np.eye(len(a))[int(np.argmax(a))] for a in log.attractions]
    pmfs["uniform"] = [np.full(len(a), 1.0 / len(a)) for a in log.attractions]
    pmfs["logging (on-policy)"] = [e.logged_pmf for e in log.events]
    results = []
    for name, pmf in pmfs.items():
        truth = float(np.mean([p @ a for p, a in zip(pmf, log.attractions)]))
        data = logged_for(log.events, pmf, q)
        results.append(TargetResult(name, truth, estimate(data), bootstrap_ci(data, reps=reps, seed=seed)))
    return results


def format_report(results: Sequence[TargetResult]) -> str:
    names = list(ESTIMATORS)
    width = max(len(r.policy) for r in results)
    lines = [f"{'target policy':<{width}}  {'truth':>7}  " + "  ".join(f"{n:>15}" for n in names)]
    for r in results:
        cells = [f"{r.estimates[n]:.4f} ({100 * r.relative_error(n):4.1f}%)" for n in names]
        lines.append(f"{r.policy:<{width}}  {r.truth:7.4f}  " + "  ".join(f"{c:>15}" for c in cells))
    lines.append("(estimate, relative error against the true value)")
    return "\n".join(lines)
