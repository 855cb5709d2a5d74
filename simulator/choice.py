"""The choice model: which shown items a user clicks, given each item's attraction.

Attraction is a binary logit against a no-click option: ``sigmoid(utility - no_click_utility)``.
Both position models leave the top slot's click probability equal to its attraction, so the
reward of the action the service chose (the top slot) has a known truth: its attraction.
"""

from __future__ import annotations

import numpy as np

__all__ = ["attraction", "clicks"]


def attraction(utility: np.ndarray, no_click_utility: float) -> np.ndarray:
    """Probability of clicking an item once it is examined."""
    return 1.0 / (1.0 + np.exp(no_click_utility - utility))


def clicks(model: str, attractions: np.ndarray, uniforms: np.ndarray, position_decay: float) -> np.ndarray:
    """Which slots of the slate get clicked.

    ``position``: slot k is examined with probability 1/(k+1)^decay, independently.
    ``cascade``: the user scans from the top and clicks the first attractive slot, then stops.
    ``uniforms`` are the world's random draws for this visit (one per slot), shared between
    policies so that they are compared on the same luck.
    """
    n = len(attractions)
    if model == "position":
        examine = 1.0 / np.arange(1, n + 1) ** position_decay
        return uniforms[:n] < examine * attractions
    attracted = uniforms[:n] < attractions
    out = np.zeros(n, dtype=bool)
    if attracted.any():
        out[int(np.argmax(attracted))] = True
    return out
