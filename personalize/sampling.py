"""Exploration sampling seeded by the event id: same event id and model give the same choice.

The probability logged for the chosen action is exactly the probability this sampler used,
which is what every off-policy estimate depends on.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

__all__ = ["seed_for", "uniform_for", "normalize", "mix_uniform", "sample_index", "squarecb_scale"]


def seed_for(event_id: str) -> int:
    """A 64-bit seed from the event id (stable across processes and Python versions)."""
    return int.from_bytes(hashlib.blake2b(event_id.encode("utf-8"), digest_size=8).digest(), "big")


def uniform_for(event_id: str) -> float:
    """A number in [0, 1) determined by the event id (53 random bits)."""
    return (seed_for(event_id) >> 11) / float(1 << 53)


def normalize(pmf: Sequence[float]) -> list[float]:
    """Clip negatives and rescale to sum 1 in double precision (VW reports float32)."""
    clipped = [p if p > 0.0 else 0.0 for p in pmf]
    total = sum(clipped)
    if total <= 0.0:
        return [1.0 / len(clipped)] * len(clipped)
    return [p / total for p in clipped]


def squarecb_scale(pmf: Sequence[float], scale: float) -> list[float]:
    """A SquareCB PMF as if its gamma were ``scale`` times larger (``scale`` >= 1: less exploration).

    VW's SquareCB gives each non-greedy action ``1 / (K + gamma * gap)``, where ``gap`` is its
    predicted cost minus the best one, and the greedy action the rest. That is invertible:
    ``gamma * gap = 1/p - K``, so the PMF of ``scale * gamma`` follows from the PMF alone. The
    greedy action is the most probable one (it keeps at least 1/K; the others get at most 1/K).
    """
    k = len(pmf)
    if scale == 1.0 or k < 2:
        return list(pmf)
    greedy = max(range(k), key=pmf.__getitem__)
    out = [0.0] * k
    for i, p in enumerate(pmf):
        if i != greedy:
            spread = 1.0 / p - k if p > 0.0 else float("inf")  # gamma * gap, >= 0 up to float32 rounding
            out[i] = 1.0 / (k + scale * max(spread, 0.0))
    out[greedy] = max(0.0, 1.0 - sum(out))
    return out


def mix_uniform(probabilities: Sequence[float], share: float) -> list[float]:
    """(1 - share) * pmf + share * uniform: every action keeps at least share / K probability.

    This floor is the service's exploration setting. It keeps importance weights bounded
    (by K / share) whatever the learning policy does, so off-policy estimates stay usable.
    """
    if share <= 0.0:
        return list(probabilities)
    k = len(probabilities)
    return [(1.0 - share) * p + share / k for p in probabilities]


def sample_index(probabilities: Sequence[float], u: float) -> int:
    """Inverse-CDF draw: the first position whose cumulative probability exceeds ``u``."""
    cumulative = 0.0
    last_positive = 0
    for i, p in enumerate(probabilities):
        if p <= 0.0:
            continue
        last_positive = i
        cumulative += p
        if u < cumulative:
            return i
    return last_positive
