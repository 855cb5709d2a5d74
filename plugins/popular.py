"""``popular``: the most interacted-with items, recent interactions counting more (time decay)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from personalize.catalog import TrainingData
from personalize.generator import CandidateRequest, ScoringGenerator
from personalize.hookspecs import hookimpl

SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True)
class PopularConfig:
    #: An interaction this many days older than the newest one counts half; None counts all equally.
    half_life_days: float | None = 90.0


class PopularGenerator(ScoringGenerator):
    """Decayed interaction counts. Every user gets the same list, so it is the cold-start fallback."""

    name = "popular"
    Config = PopularConfig
    popularity: np.ndarray

    def fit_scores(self, data: TrainingData) -> None:
        positive = data.values > 0
        weights = np.ones(int(positive.sum()))
        if self.config.half_life_days is not None and weights.size:
            stamps = data.timestamps[positive]
            weights = 0.5 ** ((stamps.max() - stamps) / (self.config.half_life_days * SECONDS_PER_DAY))
        self.popularity = np.bincount(data.items[positive], weights=weights, minlength=len(data.item_ids))

    def scores(self, request: CandidateRequest) -> np.ndarray:
        return np.where(self.popularity > 0, self.popularity, -np.inf)


@hookimpl
def register_generators() -> list[type]:
    return [PopularGenerator]
