"""``als``: matrix factorization on implicit feedback (``implicit``'s alternating least squares)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits

from personalize.catalog import TrainingData
from personalize.generator import CandidateRequest, ScoringGenerator
from personalize.hookspecs import hookimpl


@dataclass(frozen=True)
class AlsConfig:
    factors: int = 64
    regularization: float = 0.05
    #: Confidence per unit of interaction value (Hu, Koren & Volinsky's alpha).
    alpha: float = 2.0
    iterations: int = 15
    random_state: int = 42


class AlsGenerator(ScoringGenerator):
    """Dot product of the user's and each item's latent factors; unknown users get nothing."""

    name = "als"
    Config = AlsConfig
    user_factors: np.ndarray | None
    item_factors: np.ndarray

    def fit_scores(self, data: TrainingData) -> None:
        self.user_factors = None
        if not data.user_items.nnz:
            return
        c = self.config
        with threadpool_limits(1, "blas"):  # implicit runs its own threads; nested BLAS threads only slow it
            model = AlternatingLeastSquares(
                factors=c.factors, regularization=c.regularization, alpha=c.alpha, iterations=c.iterations,
                random_state=c.random_state,
            )
            model.fit(data.user_items.astype(np.float32), show_progress=False)
        self.user_factors = np.asarray(model.user_factors)
        self.item_factors = np.asarray(model.item_factors)

    def scores(self, request: CandidateRequest) -> np.ndarray | None:
        row = self.user_row(request.user_id)
        if row is None or self.user_factors is None:
            return None
        return self.item_factors @ self.user_factors[row]


@hookimpl
def register_generators() -> list[type]:
    return [AlsGenerator]
