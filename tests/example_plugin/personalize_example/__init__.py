"""``top_rated``: items with the highest damped mean value, an example of a third-party generator plugin."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from personalize.catalog import TrainingData
from personalize.generator import CandidateRequest, ScoringGenerator
from personalize.hookspecs import hookimpl

__all__ = ["TopRatedConfig", "TopRatedGenerator"]


@dataclass(frozen=True)
class TopRatedConfig:
    #: Pseudo-interactions at the global mean added to every item: more damping favours well-known items.
    damping: float = 5.0


class TopRatedGenerator(ScoringGenerator):
    """Damped mean of each item's interaction values; the same list for everyone, minus what they have seen."""

    name = "top_rated"
    Config = TopRatedConfig
    damped_mean: np.ndarray

    def fit_scores(self, data: TrainingData) -> None:
        counts = np.bincount(data.items, minlength=len(data.item_ids)).astype(float)
        sums = np.bincount(data.items, weights=data.values, minlength=len(data.item_ids))
        prior = float(data.values.mean()) if data.values.size else 0.0
        self.damped_mean = np.where(counts > 0, (sums + self.config.damping * prior) / (counts + self.config.damping), -np.inf)

    def scores(self, request: CandidateRequest) -> np.ndarray:
        return self.damped_mean


@hookimpl
def register_generators() -> list[type]:
    return [TopRatedGenerator]
