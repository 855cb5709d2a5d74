"""``svd``: matrix factorization of explicit ratings (scikit-surprise's SVD, Funk's biased SGD model).

It learns from interactions of type ``rating`` (their value is the rating), predicts a rating for
any (user, item) pair (``predict_ratings``, so ``evaluate-generators`` reports its RMSE) and
proposes each user's unrated items with the highest predicted rating. Surprise is needed only to
fit: what is kept (biases and factors) is plain NumPy, so serving never imports it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from personalize.catalog import TrainingData
from personalize.generator import CandidateRequest, ScoringGenerator
from personalize.hookspecs import hookimpl


#: Widest span of ratings fitted as they are (1..5 stars, 0.5..5); wider ones are scaled down to it.
MAX_SPAN = 5.0


@dataclass(frozen=True)
class SvdConfig:
    #: Latent factors per user and item.
    factors: int = 50
    #: Passes of stochastic gradient descent over the ratings.
    epochs: int = 30
    learning_rate: float = 0.007
    #: L2 penalty on biases and factors: higher shrinks predictions of rarely rated items toward the mean.
    regularization: float = 0.05
    random_state: int = 42


class SvdGenerator(ScoringGenerator):
    """Predicted rating ``mean + user bias + item bias + user factors · item factors``; unknown users get nothing.

    Items nobody rated have no prediction (never proposed); a pair with an unknown user or item is
    predicted from what is known (the mean plus the known bias), as surprise does. SGD's learning
    rate and regularization suit star ratings (at 0..1000 it diverges to NaN): ratings spanning more
    than ``MAX_SPAN`` are fitted divided by ``scale`` and predictions multiplied back.
    """

    name = "svd"
    Config = SvdConfig
    mean: float
    scale: float
    rating_range: tuple[float, float]
    user_bias: np.ndarray
    item_bias: np.ndarray
    user_factors: np.ndarray
    item_factors: np.ndarray
    rated_users: np.ndarray
    rated_items: np.ndarray

    def fit_scores(self, data: TrainingData) -> None:
        users, items, ratings = data.ratings()
        c = self.config
        self.user_bias = np.zeros(len(data.user_ids))
        self.item_bias = np.zeros(len(data.item_ids))
        self.user_factors = np.zeros((len(data.user_ids), c.factors))
        self.item_factors = np.zeros((len(data.item_ids), c.factors))
        self.rated_users = np.zeros(len(data.user_ids), dtype=bool)
        self.rated_items = np.zeros(len(data.item_ids), dtype=bool)
        self.mean, self.scale, self.rating_range = 0.0, 1.0, (0.0, 0.0)
        if not ratings.size:
            return
        from surprise import SVD, Trainset  # only to fit: the serve path loads plain arrays

        user_ids, user_inner = np.unique(users, return_inverse=True)
        item_ids, item_inner = np.unique(items, return_inverse=True)
        by_user: defaultdict[int, list[tuple[int, float]]] = defaultdict(list)
        by_item: defaultdict[int, list[tuple[int, float]]] = defaultdict(list)
        self.rating_range = (float(ratings.min()), float(ratings.max()))
        self.scale = max(1.0, (self.rating_range[1] - self.rating_range[0]) / MAX_SPAN)
        for u, i, r in zip(user_inner.tolist(), item_inner.tolist(), (ratings / self.scale).tolist()):
            by_user[u].append((i, r))
            by_item[i].append((u, r))
        trainset = Trainset(by_user, by_item, len(user_ids), len(item_ids), len(ratings),
                            (self.rating_range[0] / self.scale, self.rating_range[1] / self.scale),
                            {int(u): k for k, u in enumerate(user_ids)}, {int(i): k for k, i in enumerate(item_ids)})
        model = SVD(n_factors=c.factors, n_epochs=c.epochs, lr_all=c.learning_rate, reg_all=c.regularization,
                    random_state=c.random_state)
        model.fit(trainset)
        self.mean = float(trainset.global_mean)
        self.user_bias[user_ids], self.item_bias[item_ids] = model.bu, model.bi
        self.user_factors[user_ids], self.item_factors[item_ids] = model.pu, model.qi
        self.rated_users[user_ids] = True
        self.rated_items[item_ids] = True

    def scores(self, request: CandidateRequest) -> np.ndarray | None:
        row = self.user_row(request.user_id)
        if row is None or not self.rated_users[row]:
            return None
        predicted = self.mean + self.user_bias[row] + self.item_bias + self.item_factors @ self.user_factors[row]
        return np.where(self.rated_items, self.scale * predicted, -np.inf)

    def predict_ratings(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """The predicted rating of each (user id, item id), clipped to the ratings' range; the mean when both are unknown."""
        out = np.full(len(pairs), self.mean)
        for k, (user, item) in enumerate(pairs):
            u, i = self.user_index.get(user), self.item_index.get(item)
            known_u = u is not None and self.rated_users[u]
            known_i = i is not None and self.rated_items[i]
            if known_u:
                out[k] += self.user_bias[u]
            if known_i:
                out[k] += self.item_bias[i]
            if known_u and known_i:
                out[k] += float(self.user_factors[u] @ self.item_factors[i])
        return np.clip(self.scale * out, *self.rating_range)


@hookimpl
def register_generators() -> list[type]:
    return [SvdGenerator]
