"""``item_knn``: items that co-occur with the user's items (or the session's, or the current item), by cosine similarity.

The neighbourhood is learned by ``implicit``'s ``CosineRecommender`` (K nearest items per item).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from implicit.nearest_neighbours import CosineRecommender
from implicit.utils import ParameterWarning
from scipy import sparse
from threadpoolctl import threadpool_limits

from personalize.catalog import TrainingData
from personalize.generator import CandidateRequest, ScoringGenerator
from personalize.hookspecs import hookimpl


@dataclass(frozen=True)
class ItemKnnConfig:
    #: Neighbours kept per item: more finds more candidates, costs memory and latency.
    neighbours: int = 100


class ItemKnnGenerator(ScoringGenerator):
    """Sum of similarities to the user's and the session's items; with a current item in the context, similarity to it."""

    name = "item_knn"
    Config = ItemKnnConfig
    similarity: sparse.csr_matrix | None

    def fit_scores(self, data: TrainingData) -> None:
        self.similarity = None
        if data.user_items.nnz:
            model = CosineRecommender(K=self.config.neighbours)
            with threadpool_limits(1, "blas"), warnings.catch_warnings():
                warnings.simplefilter("ignore", ParameterWarning)  # implicit hands itself a COO matrix internally
                model.fit(data.user_items.astype(np.float32), show_progress=False)
            self.similarity = model.similarity.tocsr()

    def scores(self, request: CandidateRequest) -> np.ndarray | None:
        if self.similarity is None:
            return None
        current = self.item_index.get(request.current_item) if request.current_item else None
        if current is not None:
            dense = self.similarity[current].toarray().ravel()
        else:
            history = self.history(request)  # the user's items and the session's
            if history is None:
                return None
            dense = (history @ self.similarity).toarray().ravel()
        return np.where(dense > 0, dense, -np.inf)


@hookimpl
def register_generators() -> list[type]:
    return [ItemKnnGenerator]
