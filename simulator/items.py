"""The simulated catalog: MovieLens movies (or synthetic items) as arrays the world computes with.

What a client could know about an item (genres, popularity, mean rating) becomes its Rank
features; what only the world knows (hidden taste factors, the release step of held-back
items) stays in arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from personalize.movielens import load_movies, load_ratings
from simulator.config import ItemsConfig, UsersConfig

__all__ = ["GENRES", "Catalog", "build_catalog"]

GENRES: tuple[str, ...] = ("Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary", "Drama",
                           "Fantasy", "Film-Noir", "Horror", "IMAX", "Musical", "Mystery", "Romance", "Sci-Fi",
                           "Thriller", "War", "Western")
_GENRE_INDEX = {g: i for i, g in enumerate(GENRES)}


@dataclass
class Catalog:
    ids: list[str]
    genres: np.ndarray  # (n, G) 0/1
    unit_genres: np.ndarray  # rows scaled to unit length (zero rows for items without genres)
    quality: np.ndarray  # standardized shrunk mean rating
    popularity: np.ndarray  # ratings (or synthetic interactions) per item, >= 1
    self_information: np.ndarray  # -log2(share of users who know the item): novelty
    arrival: np.ndarray  # event index from which the item can be recommended
    taste: np.ndarray  # (n, k) hidden factors
    features: list[list[dict]]  # Rank "features" of each item

    def __len__(self) -> int:
        return len(self.ids)


def _unit(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)


def _arrivals(order_newest_last: np.ndarray, config: ItemsConfig) -> np.ndarray:
    """The newest ``new_fraction`` items are released one by one at ``new_per_1000`` per 1,000 events."""
    n = len(order_newest_last)
    arrival = np.zeros(n, dtype=np.int64)
    held = int(round(n * config.new_fraction))
    if held and config.new_per_1000 > 0:
        spacing = 1000.0 / config.new_per_1000
        for rank, row in enumerate(order_newest_last[n - held:]):
            arrival[row] = int(math.ceil((rank + 1) * spacing))
    return arrival


def _features(genres: np.ndarray, popularity: np.ndarray, quality: np.ndarray, arrival: np.ndarray,
              genre_weights: str) -> list[list[dict]]:
    """Genres always (1 each, or 1/sqrt(#genres) with ``genre_weights='unit'``); popularity and
    rating only for items the catalog had before the run (cold start)."""
    log_pop = np.log1p(popularity) / np.log1p(popularity.max())
    out = []
    for row in range(len(genres)):
        present = np.flatnonzero(genres[row])
        weight = round(1.0 / math.sqrt(len(present)), 4) if genre_weights == "unit" and len(present) else 1
        item = [{"genres": {GENRES[g]: weight for g in present}}]
        if arrival[row] == 0:
            item.append({"stats": {"pop": round(float(log_pop[row]), 4), "rating": round(float(quality[row]), 4)}})
        out.append(item)
    return out


def _movielens(config: ItemsConfig, users: UsersConfig, rng: np.random.Generator) -> Catalog:
    movies = load_movies()
    index = {m["id"]: row for row, m in enumerate(movies)}
    genres = np.zeros((len(movies), len(GENRES)))
    years = np.zeros(len(movies))
    for row, movie in enumerate(movies):
        for g in movie["features"].get("genres", []):
            if g in _GENRE_INDEX:
                genres[row, _GENRE_INDEX[g]] = 1.0
        years[row] = movie["features"].get("year", 0)
    ratings = load_ratings()
    items = np.array([index[r[1]] for r in ratings])
    stars = np.array([r[2] for r in ratings])
    counts = np.bincount(items, minlength=len(movies)).astype(float)
    sums = np.bincount(items, weights=stars, minlength=len(movies))
    prior = 10.0
    shrunk = (sums + prior * stars.mean()) / (counts + prior)
    quality = (shrunk - shrunk.mean()) / shrunk.std()
    popularity = counts + 1.0
    order = np.lexsort((np.arange(len(movies)), years))
    arrival = _arrivals(order, config)
    n_users = len({r[0] for r in ratings})
    return Catalog(
        ids=[m["id"] for m in movies], genres=genres, unit_genres=_unit(genres), quality=quality,
        popularity=popularity, self_information=-np.log2(np.minimum(popularity / (n_users + 1), 1.0)),
        arrival=arrival, taste=rng.standard_normal((len(movies), users.taste_factors)),
        features=_features(genres, popularity, quality, arrival, config.genre_weights),
    )


def _synthetic(config: ItemsConfig, users: UsersConfig, rng: np.random.Generator) -> Catalog:
    n = config.count
    genre_share = rng.dirichlet(np.full(len(GENRES), 2.0))
    genres = np.zeros((n, len(GENRES)))
    for row in range(n):
        k = rng.integers(1, 4)
        genres[row, rng.choice(len(GENRES), size=k, replace=False, p=genre_share)] = 1.0
    popularity = np.floor(rng.pareto(1.2, n) * 5.0) + 1.0
    quality = rng.standard_normal(n)
    arrival = _arrivals(rng.permutation(n), config)
    return Catalog(
        ids=[f"i{row}" for row in range(n)], genres=genres, unit_genres=_unit(genres), quality=quality,
        popularity=popularity, self_information=-np.log2(popularity / (popularity.max() + 1.0)),
        arrival=arrival, taste=rng.standard_normal((n, users.taste_factors)),
        features=_features(genres, popularity, quality, arrival, config.genre_weights),
    )


def build_catalog(config: ItemsConfig, users: UsersConfig, seed: int) -> Catalog:
    """The items of the world; the same seed gives the same catalog."""
    rng = np.random.default_rng([seed, 1])
    return _movielens(config, users, rng) if config.source == "movielens" else _synthetic(config, users, rng)
