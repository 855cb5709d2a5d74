"""The bundled MovieLens-small data set (personalize/data/movielens-small), as plain Python data.

Stable interface, also used by the simulator:

- ``load_movies() -> list[dict]``: one dict per movie, ``{"id": "1", "created_at": float,
  "features": {"title": "Toy Story (1995)", "genres": ["Adventure", ...], "year": 1995,
  "tags": ["pixar", ...]}}``. ``year`` is absent when the title has none; ``tags`` are the
  distinct lower-cased user tags. ``created_at`` is the movie's first rating time (UNIX
  seconds): MovieLens has no "added to catalog" time and this is the closest proxy.
- ``load_ratings() -> list[tuple[str, str, float, float]]``: ``(user_id, item_id, rating,
  timestamp)`` in file order; ratings are 0.5..5 stars, timestamps UNIX seconds.
"""

from __future__ import annotations

import csv
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["DATA_DIR", "load_movies", "load_ratings"]

DATA_DIR = Path(__file__).parent / "data" / "movielens-small"
_YEAR = re.compile(r"\((\d{4})\)\s*$")


@lru_cache(maxsize=1)
def _ratings() -> tuple[tuple[str, str, float, float], ...]:
    with open(DATA_DIR / "ratings.csv", newline="", encoding="utf-8") as fh:
        return tuple((r["userId"], r["movieId"], float(r["rating"]), float(r["timestamp"])) for r in csv.DictReader(fh))


def load_ratings() -> list[tuple[str, str, float, float]]:
    """Every rating as ``(user_id, item_id, rating, timestamp)``."""
    return list(_ratings())


def load_movies() -> list[dict[str, Any]]:
    """Every movie with title, genres, year and tags as features (see the module docstring)."""
    first_rated: dict[str, float] = {}
    for _, item, _, ts in _ratings():
        first_rated[item] = min(ts, first_rated.get(item, ts))
    tags: dict[str, set[str]] = {}
    with open(DATA_DIR / "tags.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            tags.setdefault(row["movieId"], set()).add(row["tag"].strip().lower())
    movies = []
    with open(DATA_DIR / "movies.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            features: dict[str, Any] = {"title": row["title"].strip()}
            if row["genres"] != "(no genres listed)":
                features["genres"] = row["genres"].split("|")
            match = _YEAR.search(row["title"])
            if match:
                features["year"] = int(match.group(1))
            if row["movieId"] in tags:
                features["tags"] = sorted(tags[row["movieId"]])
            created = first_rated.get(row["movieId"], float(features.get("year", 1970) - 1970) * 31_557_600.0)
            movies.append({"id": row["movieId"], "created_at": created, "features": features})
    return movies
