"""Simulated users: genre preferences fitted on MovieLens ratings, segments, synthetic newcomers.

A MovieLens rater's preference for a genre is how much more of it they rate than the average
rater (a shrunk log share ratio) plus how much higher they rate it than their own mean. k-means
on those vectors gives the segments; each segment's mean and covariance generate synthetic
users of any number, and the newcomers who replace users who leave.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from sklearn.cluster import KMeans

from personalize.movielens import load_movies, load_ratings
from simulator.config import UsersConfig
from simulator.items import GENRES

__all__ = ["Population", "fit_movielens_preferences", "build_population"]


@lru_cache(maxsize=4)
def fit_movielens_preferences(prior_strength: float) -> np.ndarray:
    """One row per MovieLens rater: standardized genre preferences (see the module docstring)."""
    genre_index = {g: i for i, g in enumerate(GENRES)}
    movie_genres: dict[str, np.ndarray] = {}
    for movie in load_movies():
        row = np.zeros(len(GENRES))
        for g in movie["features"].get("genres", []):
            if g in genre_index:
                row[genre_index[g]] = 1.0
        movie_genres[movie["id"]] = row
    user_rows: dict[str, int] = {}
    ratings = load_ratings()
    users = np.array([user_rows.setdefault(r[0], len(user_rows)) for r in ratings])
    genres = np.array([movie_genres[r[1]] for r in ratings])
    stars = np.array([r[2] for r in ratings])
    n_users = len(user_rows)
    per_rating = genres / np.maximum(genres.sum(axis=1, keepdims=True), 1.0)
    counts = np.zeros((n_users, len(GENRES)))
    np.add.at(counts, users, per_rating)
    totals = np.bincount(users, minlength=n_users).astype(float)
    share = counts.sum(axis=0) / totals.sum()
    m = prior_strength
    share_term = np.log((counts + m * share) / (totals[:, None] + m) / share)
    user_mean = np.bincount(users, weights=stars, minlength=n_users) / totals
    deviation = np.zeros((n_users, len(GENRES)))
    np.add.at(deviation, users, genres * (stars - user_mean[users])[:, None])
    genre_counts = np.zeros((n_users, len(GENRES)))
    np.add.at(genre_counts, users, genres)
    rating_term = deviation / (genre_counts + m)
    centered = share_term + rating_term
    centered -= centered.mean(axis=0)
    return centered / centered.std()


@dataclass
class Population:
    """The initial users and the segment mixture that newcomers are drawn from."""

    preferences: np.ndarray  # (P, G)
    segments: np.ndarray  # (P,) true segment of each initial user
    means: np.ndarray  # (S, G)
    covariances: np.ndarray  # (S, G, G)
    weights: np.ndarray  # (S,)

    def __len__(self) -> int:
        return len(self.preferences)

    def newcomer(self, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        """A fresh user: (preferences, true segment)."""
        segment = int(rng.choice(len(self.weights), p=self.weights))
        return rng.multivariate_normal(self.means[segment], self.covariances[segment]), segment


def build_population(config: UsersConfig, seed: int) -> Population:
    """MovieLens raters as they are, or ``count`` synthetic users from the fitted segments."""
    fitted = fit_movielens_preferences(config.prior_strength)
    kmeans = KMeans(n_clusters=config.segments, random_state=seed, n_init=4).fit(fitted)
    labels = kmeans.labels_
    dims = fitted.shape[1]
    means = np.array([fitted[labels == s].mean(axis=0) for s in range(config.segments)])
    covariances = np.array([
        (np.cov(fitted[labels == s], rowvar=False) if (labels == s).sum() > 1 else np.zeros((dims, dims)))
        + 1e-3 * np.eye(dims)
        for s in range(config.segments)
    ])
    weights = np.bincount(labels, minlength=config.segments) / len(labels)
    population = Population(fitted, labels, means, covariances, weights)
    if config.source == "movielens":
        return population
    rng = np.random.default_rng([seed, 5])
    drawn = [population.newcomer(rng) for _ in range(config.count)]
    return Population(np.array([d[0] for d in drawn]), np.array([d[1] for d in drawn]), means, covariances, weights)
