"""Off-policy estimators of a target policy's mean reward from events logged by another policy.

Everything is computed from five numbers per logged event ``i`` (see ``Logged``): the reward
``r``, the logging probability ``mu`` of the logged action, the target's probability ``pi`` of
it, the reward model's prediction ``q`` for it, and ``dm`` = the target's expected reward
under the reward model, ``sum_a pi(a|x) q(x, a)``. With ``w = pi / mu``:

- IPS ``mean(w r)``: unbiased when ``mu > 0`` wherever ``pi > 0``; high variance for large w.
- SNIPS ``sum(w r) / sum(w)``: self-normalized IPS, slightly biased, much lower variance.
- DM ``mean(dm)``: no variance from the weights, biased by the reward model.
- DR ``mean(dm + w (r - q))``: unbiased if either the weights or the model are right.
- SNDR: DR with the correction self-normalized by ``sum(w)``.
- Switch-DR (Wang et al., 2017): DR, but the correction is dropped for events with ``w > tau``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["Logged", "ESTIMATORS", "UNBIASED", "estimate", "bootstrap_ci", "SWITCH_TAU"]

#: Importance weight above which Switch-DR trusts the reward model instead of the weights.
SWITCH_TAU = 20.0


@dataclass(frozen=True)
class Logged:
    """Per-event arrays, all of the same length."""

    reward: np.ndarray
    mu: np.ndarray
    pi: np.ndarray
    q: np.ndarray
    dm: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.reward)
        if not all(len(a) == n for a in (self.mu, self.pi, self.q, self.dm)):
            raise ValueError("every per-event array must have one entry per logged event")
        if n and np.any(self.mu <= 0):
            raise ValueError("logged probabilities must be positive")

    def __len__(self) -> int:
        return len(self.reward)

    def take(self, index: np.ndarray) -> "Logged":
        return Logged(self.reward[index], self.mu[index], self.pi[index], self.q[index], self.dm[index])


def _w(d: Logged) -> np.ndarray:
    return d.pi / d.mu


def ips(d: Logged) -> float:
    return float(np.mean(_w(d) * d.reward))


def snips(d: Logged) -> float:
    w = _w(d)
    return float(np.sum(w * d.reward) / np.sum(w)) if np.sum(w) > 0 else float("nan")


def direct_method(d: Logged) -> float:
    return float(np.mean(d.dm))


def doubly_robust(d: Logged) -> float:
    return float(np.mean(d.dm + _w(d) * (d.reward - d.q)))


def self_normalized_dr(d: Logged) -> float:
    w = _w(d)
    correction = np.sum(w * (d.reward - d.q)) / np.sum(w) if np.sum(w) > 0 else 0.0
    return float(np.mean(d.dm) + correction)


def switch_dr(d: Logged, tau: float = SWITCH_TAU) -> float:
    w = _w(d)
    return float(np.mean(d.dm + np.where(w <= tau, w * (d.reward - d.q), 0.0)))


#: Name -> estimator, in report order.
ESTIMATORS: dict[str, Callable[[Logged], float]] = {
    "ips": ips, "snips": snips, "dm": direct_method, "dr": doubly_robust, "sndr": self_normalized_dr,
    "switch_dr": switch_dr,
}

#: Estimators that are unbiased (IPS, DR) or consistent (SNIPS, SNDR) whatever the reward model.
UNBIASED: tuple[str, ...] = ("ips", "snips", "dr", "sndr")


def estimate(d: Logged, names: tuple[str, ...] | None = None) -> dict[str, float]:
    return {name: ESTIMATORS[name](d) for name in (names or tuple(ESTIMATORS))}


def bootstrap_ci(d: Logged, names: tuple[str, ...] | None = None, reps: int = 200, level: float = 0.95,
                 seed: int = 0) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals (resampling events with replacement)."""
    names = names or tuple(ESTIMATORS)
    rng = np.random.default_rng(seed)
    n = len(d)
    draws = {name: np.empty(reps) for name in names}
    for rep in range(reps):
        sample = d.take(rng.integers(n, size=n))
        for name in names:
            draws[name][rep] = ESTIMATORS[name](sample)
    tail = (1.0 - level) / 2.0 * 100.0
    return {name: (float(np.nanpercentile(v, tail)), float(np.nanpercentile(v, 100.0 - tail)))
            for name, v in draws.items()}
