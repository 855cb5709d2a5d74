"""MABWiser's LinUCB as a reference learner, on the same information the service gets.

MABWiser's linear bandits keep one model per arm; with thousands of items and 50 fresh
candidates per event, per-item arms never warm up. The adapter therefore gives MABWiser a
single arm whose context is the outer product of the context vector (segment, genre profile,
history genres, time, device) and the action vector (genres, popularity, rating): the dense counterpart of VW's
``-q ::`` on the Rank features. It refits every ``linucb_batch`` events, because each MABWiser
update inverts the full matrix.
"""

from __future__ import annotations

import numpy as np
from mabwiser.mab import MAB, LearningPolicy

from simulator.config import SimConfig
from simulator.items import Catalog
from simulator.world import Outcome, Visit, World

__all__ = ["LinUCB"]

_ARM = 1


class LinUCB:
    def __init__(self, name: str, config: SimConfig, catalog: Catalog):
        self.name = name
        self.config = config
        self.mab = MAB(arms=[_ARM], learning_policy=LearningPolicy.LinUCB(alpha=config.run.linucb_alpha),
                       seed=config.seed)
        log_pop = np.log1p(catalog.popularity) / np.log1p(catalog.popularity.max())
        known = (catalog.arrival == 0).astype(float)
        genres = catalog.unit_genres if config.items.genre_weights == "unit" else catalog.genres  # as clients send them
        self.item_vectors = np.column_stack([np.ones(len(catalog)), genres, log_pop * known, catalog.quality * known])
        self.pending_x: list[np.ndarray] = []
        self.pending_y: list[float] = []
        self.fitted = False
        self.last_features = np.empty((0, 0))

    def _context(self, visit: Visit, world: World) -> np.ndarray:
        ctx = self.config.context
        profile = world.profile(visit.slot)
        total = profile.sum()
        return np.concatenate([
            [1.0],
            np.eye(self.config.users.segments)[world.seen_segment[visit.slot]],
            world.known_preferences[visit.slot],
            profile / total if total else profile,
            np.eye(len(ctx.times))[visit.time],
            np.eye(len(ctx.devices))[visit.device],
        ])

    def _features(self, visit: Visit, world: World) -> np.ndarray:
        context = self._context(visit, world)
        items = self.item_vectors[visit.candidates]
        if self.config.users.consumed_flag:  # the same "already consumed" mark the service gets
            consumed = world.consumed[visit.slot]
            items = np.column_stack([items, [float(i in consumed) for i in visit.candidates]])
        return (items[:, None, :] * context[None, :, None]).reshape(len(items), -1)

    def rank(self, visit: Visit, world: World, attractions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(visit.candidates)
        self.last_features = self._features(visit, world)  # learn() runs after the world has moved on
        if not self.fitted:
            ranking = np.arange(n)
        else:
            expectations = self.mab.predict_expectations(contexts=self.last_features)
            scores = np.array([e[_ARM] for e in expectations]) if n > 1 else np.array([expectations[_ARM]])
            ranking = np.argsort(-scores, kind="stable")
        probabilities = np.zeros(n)
        probabilities[ranking[0]] = 1.0
        return ranking, probabilities

    def learn(self, visit: Visit, world: World, ranking: np.ndarray, outcome: Outcome) -> None:
        self.pending_x.append(self.last_features[ranking[0]])
        self.pending_y.append(outcome.reward)
        if len(self.pending_y) >= self.config.run.linucb_batch:
            x, y = np.array(self.pending_x), np.array(self.pending_y)
            decisions = [_ARM] * len(y)
            if self.fitted:
                self.mab.partial_fit(decisions, y, x)
            else:
                self.mab.fit(decisions, y, x)
                self.fitted = True
            self.pending_x.clear()
            self.pending_y.clear()

    def close(self) -> None:
        pass
