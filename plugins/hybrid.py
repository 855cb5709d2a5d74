"""``hybrid``: a weighted blend of other generators, falling back to content/popular/fresh for cold users.

Each component proposes a pool; scores are min-max normalized per component and summed with
the configured weights. Components that know nothing about a request (a new user for ``als``,
an item nobody touched for ``item_knn``) simply return nothing, so the blend degrades to the
generators that still apply. Each result names the components that proposed it (``sources``),
which the bandit sees as features.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from personalize.catalog import TrainingData
from personalize.generator import CandidateRequest, Generator, ScoredItem, ScoringGenerator, Source, normalized
from personalize.hookspecs import hookimpl


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
    item_ids: np.ndarray
    item_index: dict[str, int]

    def fit(self, data: TrainingData) -> None:
        from personalize.plugins import make_generator

        self.item_ids = np.asarray(data.item_ids, dtype=object)
        self.item_index = data.item_index
        self.components = {}
        for name in self.config.weights:
            component = make_generator(name)
            component.fit(data)
            self.components[name] = component

    def _pool(self, component: Generator, request: CandidateRequest, n: int) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(component, ScoringGenerator):  # fitted on the same data: same catalog positions
            return component.top(request, n)
        proposed = [(self.item_index[c.item_id], c.score) for c in component.candidates(request, n) if c.item_id in self.item_index]
        return np.array([p for p, _ in proposed], dtype=np.int64), np.array([s for _, s in proposed], dtype=np.float64)

    def candidates(self, request: CandidateRequest, n: int) -> list[ScoredItem]:
        if n <= 0 or len(self.item_ids) == 0:
            return []
        blended = np.zeros(len(self.item_ids))
        proposed = np.zeros(len(self.item_ids), dtype=bool)
        pools = {}
        for name, component in self.components.items():
            positions, scores = self._pool(component, request, n * self.config.pool_factor)
            norm = normalized(scores)
            blended[positions] += self.config.weights[name] * norm  # positions are unique within a pool
            proposed[positions] = True
            pools[name] = (positions, norm)
        candidates = np.flatnonzero(proposed)
        top = candidates[np.lexsort((candidates, -blended[candidates]))][:n]  # ties by catalog order
        wanted = set(top.tolist())
        sources: dict[int, list[Source]] = {int(i): [] for i in top}
        for name, (positions, norm) in pools.items():
            for rank, (position, score) in enumerate(zip(positions.tolist(), norm.tolist()), start=1):
                if position in wanted:
                    sources[position].append(Source(name, score, rank))
        return [ScoredItem(self.item_ids[i], float(blended[i]), tuple(sources[i])) for i in top.tolist()]


@hookimpl
def register_generators() -> list[type]:
    return [HybridGenerator]
