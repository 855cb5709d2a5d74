"""``hybrid``: a weighted blend of other generators, falling back to content/popular/fresh for cold users.

Each component proposes a pool; scores are min-max normalized per component and summed with
the configured weights. Components that know nothing about a request (a new user for ``als``,
an item nobody touched for ``item_knn``) simply return nothing, so the blend degrades to the
generators that still apply. Each result names the components that proposed it (``sources``),
which the bandit sees as features.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from personalize.catalog import TrainingData
from personalize.generator import CandidateRequest, Generator, ScoredItem, Source, normalized
from personalize.hookspecs import hookimpl

import numpy as np


@dataclass(frozen=True)
class HybridConfig:
    #: Component generator name -> weight of its normalized score. Any registered generator may be named.
    weights: dict[str, float] = field(default_factory=lambda: {
        "als": 1.0, "item_knn": 1.0, "user_knn": 0.5, "content": 0.5, "popular": 0.3, "fresh": 0.1,
    })
    #: Each component proposes this many times ``n`` before blending.
    pool_factor: int = 2


class HybridGenerator(Generator):
    name = "hybrid"
    Config = HybridConfig
    components: dict[str, Generator]

    def fit(self, data: TrainingData) -> None:
        from personalize.plugins import make_generator

        self.components = {}
        for name in self.config.weights:
            component = make_generator(name)
            component.fit(data)
            self.components[name] = component

    def candidates(self, request: CandidateRequest, n: int) -> list[ScoredItem]:
        if n <= 0:
            return []
        blended: dict[str, float] = {}
        sources: dict[str, list[Source]] = {}
        for name, component in self.components.items():
            proposed = component.candidates(request, n * self.config.pool_factor)
            scores = normalized(np.array([c.score for c in proposed]))
            for rank, (item, score) in enumerate(zip(proposed, scores), start=1):
                blended[item.item_id] = blended.get(item.item_id, 0.0) + self.config.weights[name] * float(score)
                sources.setdefault(item.item_id, []).append(Source(name, float(score), rank))
        order = sorted(blended, key=lambda item: -blended[item])[:n]  # stable: ties keep first-proposed order
        return [ScoredItem(item, blended[item], tuple(sources[item])) for item in order]


@hookimpl
def register_generators() -> list[type]:
    return [HybridGenerator]
