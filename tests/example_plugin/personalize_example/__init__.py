"""An example third-party plugin: a ``top_rated`` generator and a ``country`` context plugin.

``top_rated``: items with the highest damped mean value. ``enrich_context``: the visitor's country
from the geolocation header a CDN adds (Cloudflare's ``CF-IPCountry``, CloudFront's
``CloudFront-Viewer-Country``), as ``{"location": {"country": "IT"}}``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from personalize.catalog import TrainingData
from personalize.enrichment import RankContext
from personalize.generator import CandidateRequest, ScoringGenerator
from personalize.hookspecs import hookimpl

__all__ = ["TopRatedConfig", "TopRatedGenerator", "enrich_context", "COUNTRY_HEADERS"]

#: Headers a CDN sets to the visitor's ISO 3166 country code, first found wins.
COUNTRY_HEADERS = ("CF-IPCountry", "CloudFront-Viewer-Country")
_COUNTRY = re.compile(r"[A-Z]{2}")
_UNKNOWN = {"XX", "T1"}  # Cloudflare: no country known, Tor


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


@hookimpl
def enrich_context(context: RankContext) -> dict[str, Any] | None:
    """The visitor's country, when the request came through a CDN that says it; nothing otherwise."""
    for header in COUNTRY_HEADERS:
        code = (context.headers.get(header) or "").strip().upper()
        if _COUNTRY.fullmatch(code) and code not in _UNKNOWN:
            return {"location": {"country": code}}
    return None
