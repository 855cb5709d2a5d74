"""``serendipity``: items relevant to similar users but unlike the user's own history, drawn at random.

The pool is ``user_knn``'s proposals; of those, the ones whose content similarity to the
user's profile is at or below the pool's median are kept ("outside the usual profile"), and
``n`` are drawn without replacement with probability proportional to their ``user_knn`` score.
The draw uses ``request.seed`` (derived from the event id), so a decision can be replayed.
The candidate service uses it for ``serendipity`` x ``numCandidates`` of the slots.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from personalize.catalog import TrainingData
from personalize.generator import CandidateRequest, Generator, ScoredItem, normalized
from personalize.hookspecs import hookimpl
from plugins.content import ContentGenerator
from plugins.user_knn import UserKnnGenerator


@dataclass(frozen=True)
class SerendipityConfig:
    #: ``user_knn`` proposes this many times ``n`` items to draw from.
    pool_factor: int = 5


class SerendipityGenerator(Generator):
    name = "serendipity"
    Config = SerendipityConfig
    relevance: UserKnnGenerator
    content: ContentGenerator

    def fit(self, data: TrainingData) -> None:
        self.relevance = UserKnnGenerator()
        self.relevance.fit(data)
        self.content = ContentGenerator()
        self.content.fit(data)

    def candidates(self, request: CandidateRequest, n: int) -> list[ScoredItem]:
        if n <= 0:
            return []
        pool = self.relevance.candidates(request, n * self.config.pool_factor)
        profile = self.content.scores(CandidateRequest(request.user_id))
        if not pool or profile is None:
            return []
        similarity = np.array([profile[self.content.item_index[c.item_id]] for c in pool])
        similarity = np.where(np.isfinite(similarity), similarity, 0.0)
        unlike = np.flatnonzero(similarity <= np.median(similarity))
        relevance = normalized(np.array([pool[i].score for i in unlike])) + 0.05  # every unlike item has a chance
        rng = np.random.default_rng(request.seed)
        drawn = rng.choice(len(unlike), size=min(n, len(unlike)), replace=False, p=relevance / relevance.sum())
        drawn = sorted(drawn, key=lambda j: (-pool[unlike[j]].score, unlike[j]))
        return [ScoredItem(pool[unlike[j]].item_id, pool[unlike[j]].score) for j in drawn]


@hookimpl
def register_generators() -> list[type]:
    return [SerendipityGenerator]
