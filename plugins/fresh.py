"""``fresh``: the newest items, so new arrivals get shown before anyone has interacted with them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from personalize.catalog import TrainingData
from personalize.generator import CandidateRequest, ScoringGenerator
from personalize.hookspecs import hookimpl

SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True)
class FreshConfig:
    #: An item this many days older than the newest item scores half as much.
    half_life_days: float = 30.0


class FreshGenerator(ScoringGenerator):
    """Scores by item age relative to the newest item: 1.0 for the newest, halving every half-life."""

    name = "fresh"
    Config = FreshConfig
    freshness: np.ndarray

    def fit_scores(self, data: TrainingData) -> None:
        created = data.item_created
        newest = created.max() if created.size else 0.0
        self.freshness = 0.5 ** ((newest - created) / (self.config.half_life_days * SECONDS_PER_DAY))

    def scores(self, request: CandidateRequest) -> np.ndarray:
        return self.freshness


@hookimpl
def register_generators() -> list[type]:
    return [FreshGenerator]
