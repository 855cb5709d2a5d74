"""``user_knn``: items liked by the users most similar to this one (cosine over interaction vectors).

Neighbours come from scikit-learn's ``NearestNeighbors``, computed for every user at fit time
so a request is a lookup plus one sparse product.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import normalize

from personalize.catalog import TrainingData
from personalize.generator import CandidateRequest, ScoringGenerator
from personalize.hookspecs import hookimpl


@dataclass(frozen=True)
class UserKnnConfig:
    #: Similar users whose items are proposed.
    neighbours: int = 30


class UserKnnGenerator(ScoringGenerator):
    """Score of an item: similarity-weighted sum over the neighbours' (row-normalized) interactions."""

    name = "user_knn"
    Config = UserKnnConfig
    neighbour_ids: np.ndarray
    neighbour_sims: np.ndarray
    profiles: sparse.csr_matrix

    def fit_scores(self, data: TrainingData) -> None:
        users = data.user_items.shape[0]
        self.profiles = normalize(data.user_items, norm="l2").tocsr() if users else data.user_items
        k = min(self.config.neighbours + 1, users)
        if k < 2:
            self.neighbour_ids = np.zeros((users, 0), dtype=np.int64)
            self.neighbour_sims = np.zeros((users, 0))
            return
        index = NearestNeighbors(n_neighbors=k, metric="cosine", algorithm="brute").fit(self.profiles)
        distances, ids = index.kneighbors(self.profiles)
        not_self = ids != np.arange(users)[:, None]
        # drop each user from their own list (keeping k-1 columns even when duplicates tie with self)
        order = np.argsort(~not_self, axis=1, kind="stable")[:, : k - 1]
        self.neighbour_ids = np.take_along_axis(ids, order, axis=1)
        self.neighbour_sims = 1.0 - np.take_along_axis(distances, order, axis=1)

    def scores(self, request: CandidateRequest) -> np.ndarray | None:
        row = self.user_row(request.user_id)
        if row is None or self.neighbour_ids.shape[1] == 0:
            return None
        sims = np.clip(self.neighbour_sims[row], 0.0, None)
        dense = (sparse.csr_matrix(sims) @ self.profiles[self.neighbour_ids[row]]).toarray().ravel()
        return np.where(dense > 0, dense, -np.inf)


@hookimpl
def register_generators() -> list[type]:
    return [UserKnnGenerator]
