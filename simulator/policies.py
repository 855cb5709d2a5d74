"""The policies a run compares: baselines, the oracle, and the service itself (through a Transport).

A policy ranks the visit's candidates and says, for every candidate, the probability that it
would have been put on top (the action whose reward is reported). That distribution is what
makes the value of a policy exact: ``sum_a p(a) * attraction(a)``.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from simulator.items import Catalog
from simulator.transport import Transport
from simulator.world import Outcome, Visit, World

__all__ = ["Policy", "Uniform", "Popularity", "Oracle", "Service"]


class Policy(Protocol):
    name: str

    def rank(self, visit: Visit, world: World, attractions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(candidate positions, top first; probability of each candidate position being on top)."""
        ...

    def learn(self, visit: Visit, world: World, ranking: np.ndarray, outcome: Outcome) -> None: ...

    def close(self) -> None: ...


def _one_hot(n: int, index: int) -> np.ndarray:
    out = np.zeros(n)
    out[index] = 1.0
    return out


class Uniform:
    """A uniformly random ranking: the floor every learner must clear."""

    def __init__(self, name: str, seed: int):
        self.name = name
        self.rng = np.random.default_rng([seed, 7])

    def rank(self, visit: Visit, world: World, attractions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(visit.candidates)
        return self.rng.permutation(n), np.full(n, 1.0 / n)

    def learn(self, visit: Visit, world: World, ranking: np.ndarray, outcome: Outcome) -> None:
        pass

    def close(self) -> None:
        pass


class Popularity:
    """Most consumed first: the catalog's rating counts plus every click seen during the run."""

    def __init__(self, name: str, catalog: Catalog):
        self.name = name
        self.score = catalog.popularity.astype(float).copy()

    def rank(self, visit: Visit, world: World, attractions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ranking = np.argsort(-self.score[visit.candidates], kind="stable")
        return ranking, _one_hot(len(ranking), int(ranking[0]))

    def learn(self, visit: Visit, world: World, ranking: np.ndarray, outcome: Outcome) -> None:
        np.add.at(self.score, outcome.slate[outcome.clicked], 1.0)

    def close(self) -> None:
        pass


class Oracle:
    """Knows every true click probability: the ceiling, and the reference for regret."""

    def __init__(self, name: str):
        self.name = name

    def rank(self, visit: Visit, world: World, attractions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ranking = np.argsort(-attractions, kind="stable")
        return ranking, _one_hot(len(ranking), int(ranking[0]))

    def learn(self, visit: Visit, world: World, ranking: np.ndarray, outcome: Outcome) -> None:
        pass

    def close(self) -> None:
        pass


class Service:
    """The personalize service, driven only through Rank and Reward (inline actions)."""

    def __init__(self, name: str, transport: Transport, catalog: Catalog, run_id: str):
        self.name = name
        self.transport = transport
        self.catalog = catalog
        self.run_id = run_id

    def event_id(self, visit: Visit) -> str:
        return f"{self.run_id}-{self.name}-{visit.step}"

    def rank(self, visit: Visit, world: World, attractions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ids = self.catalog.ids
        features = self.catalog.features
        body = {
            "eventId": self.event_id(visit),
            "contextFeatures": world.context_features(visit),
            "actions": [{"id": ids[i], "features": features[i]} for i in visit.candidates],
        }
        answer = self.transport.rank(body)
        position = {ids[item]: pos for pos, item in enumerate(visit.candidates)}
        ranking = np.array([position[entry["id"]] for entry in answer["ranking"]])
        probabilities = np.zeros(len(ranking))
        probabilities[ranking] = [entry["probability"] for entry in answer["ranking"]]
        return ranking, probabilities / probabilities.sum()

    def learn(self, visit: Visit, world: World, ranking: np.ndarray, outcome: Outcome) -> None:
        self.transport.reward(self.event_id(visit), outcome.reward)

    def close(self) -> None:
        self.transport.close()
