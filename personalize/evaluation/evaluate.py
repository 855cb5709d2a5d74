"""Estimate alternative learning policies' values on logged events, beside the online policy's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from personalize.config import Settings
from personalize.evaluation.estimators import ESTIMATORS, bootstrap_ci, estimate
from personalize.evaluation.replay import LoggedEvent, logged_for, policy_args, replay_policy, reward_model
from personalize.ranker import Explorer

__all__ = ["PolicyEstimate", "evaluate", "format_table", "ONLINE"]

#: Name of the row for the policy that logged the events (its own value needs no estimator).
ONLINE = "online (logged)"


@dataclass
class PolicyEstimate:
    policy: str
    estimates: dict[str, float]
    intervals: dict[str, tuple[float, float]]


def evaluate(events: Sequence[LoggedEvent], policies: Sequence[str], reps: int = 200, seed: int = 0,
             reward_range: tuple[float, float] = (0.0, 1.0), settings: Settings | None = None) -> list[PolicyEstimate]:
    """One row per policy (VW learning-policy strings), after the online policy's row.

    Each policy is evaluated as the service would serve it under ``settings`` (default: the
    defaults): its VW PMF with the service's SquareCB scaling and exploration floor.
    """
    settings = settings or Settings()
    if not events:
        raise ValueError("no logged events with rewards to evaluate")
    q = reward_model(events, reward_range)
    rewards = np.array([e.reward for e in events])
    n = len(rewards)
    rng = np.random.default_rng(seed)
    boot = [float(rewards[rng.integers(n, size=n)].mean()) for _ in range(reps)]
    online_ci = (float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5)))
    rows = [PolicyEstimate(ONLINE, {"mean reward": float(rewards.mean())}, {"mean reward": online_ci})]
    for policy in policies:
        args = policy_args(policy)
        explorer = Explorer.for_policy(args, settings.exploration, settings.squarecb_actions)
        data = logged_for(events, replay_policy(events, args, explorer), q)
        rows.append(PolicyEstimate(policy, estimate(data), bootstrap_ci(data, reps=reps, seed=seed)))
    return rows


def format_table(rows: Sequence[PolicyEstimate]) -> str:
    """Plain-text table: value [95% interval] per estimator."""
    names = list(ESTIMATORS)
    width = max(len(r.policy) for r in rows)
    lines = [f"{'policy':<{width}}  " + "  ".join(f"{n:<21}" for n in names)]
    for row in rows:
        if row.policy == ONLINE:
            value = row.estimates["mean reward"]
            low, high = row.intervals["mean reward"]
            lines.append(f"{row.policy:<{width}}  mean reward {value:.4f} [{low:.4f}, {high:.4f}]")
            continue
        cells = [f"{row.estimates[n]:.4f} [{row.intervals[n][0]:.3f},{row.intervals[n][1]:.3f}]" for n in names]
        lines.append(f"{row.policy:<{width}}  " + "  ".join(f"{c:<21}" for c in cells))
    return "\n".join(lines)
