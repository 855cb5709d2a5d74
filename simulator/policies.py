"""The policies a run compares: baselines, the oracle, and the service itself (through a Transport).

A policy ranks the visit's candidates and says, for every candidate, the probability that it
would have been put on top (the action whose reward is reported). That distribution is what
makes the value of a policy exact: ``sum_a p(a) * attraction(a)``.

A policy may also ``propose`` its own candidates for a visit (item rows; None = the traffic's):
the service in generator mode (Rank by userId) and the oracle, which then picks from the whole
released catalog.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from simulator.generator_mode import CatalogLoader
from simulator.items import Catalog
from simulator.transport import Transport
from simulator.world import Outcome, Visit, World

__all__ = ["Policy", "Uniform", "Popularity", "Oracle", "Service", "CONSUMED_FEATURE"]

#: The action feature a client adds to candidates the user already consumed (users.consumed_flag).
CONSUMED_FEATURE = {"seen": {"consumed": 1}}


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
    """Knows every true click probability: the ceiling, and the reference for regret.

    With ``whole_catalog`` (generator mode) it picks from every released item, not the visit's candidates.
    """

    def __init__(self, name: str, catalog: Catalog | None = None, whole_catalog: bool = False):
        self.name = name
        self.catalog = catalog
        self.whole_catalog = whole_catalog

    def propose(self, visit: Visit, world: World) -> np.ndarray | None:
        if not self.whole_catalog or self.catalog is None:
            return None
        return np.flatnonzero(self.catalog.arrival <= visit.step)

    def rank(self, visit: Visit, world: World, attractions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ranking = np.argsort(-attractions, kind="stable")
        return ranking, _one_hot(len(ranking), int(ranking[0]))

    def learn(self, visit: Visit, world: World, ranking: np.ndarray, outcome: Outcome) -> None:
        pass

    def close(self) -> None:
        pass


class Service:
    """The personalize service, driven only through its public API.

    Inline mode sends the visit's candidates with each Rank call. Generator mode (``loader``
    given: the catalog and past interactions are loaded) sends Rank by ``userId`` and ranks
    whatever the service proposes.
    """

    def __init__(self, name: str, transport: Transport, catalog: Catalog, run_id: str,
                 loader: CatalogLoader | None = None, candidates: int = 50, refit_every: int = 0,
                 consumed_flag: bool = False):
        self.name = name
        self.transport = transport
        self.catalog = catalog
        self.run_id = run_id
        self.loader = loader
        self.candidates = candidates
        self.refit_every = refit_every
        self.consumed_flag = consumed_flag
        self.refits = 0
        self.row_of = {item_id: row for row, item_id in enumerate(catalog.ids)}
        self._answer: dict | None = None

    def event_id(self, visit: Visit) -> str:
        return f"{self.run_id}-{self.name}-{visit.step}"

    def propose(self, visit: Visit, world: World) -> np.ndarray | None:
        """Generator mode: one Rank call by userId; its candidates, in ranking order."""
        if self.loader is None:
            return None
        self.loader.release(visit.step)
        if self.refit_every and visit.step and visit.step % self.refit_every == 0:
            self.transport.post("/generators/train", {})  # the public API; deterministic in simulated time
            self.refits += 1
        self._answer = self.transport.rank({
            "eventId": self.event_id(visit), "userId": world.user_id(visit.slot),
            "contextFeatures": world.context_features(visit), "numCandidates": self.candidates,
        })
        return np.array([self.row_of[entry["id"]] for entry in self._answer["ranking"]])

    def rank(self, visit: Visit, world: World, attractions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._answer is not None:  # generator mode: the candidates are the answer's ranking
            answer, self._answer = self._answer, None
            probabilities = np.array([entry["probability"] for entry in answer["ranking"]])
            return np.arange(len(probabilities)), probabilities / probabilities.sum()
        ids = self.catalog.ids
        features = self.catalog.features
        body = {
            "eventId": self.event_id(visit),
            "contextFeatures": world.context_features(visit),
            "actions": [{"id": ids[i], "features": features[i]} for i in visit.candidates],
        }
        if self.consumed_flag and (consumed := world.consumed[visit.slot]):
            for action, item in zip(body["actions"], visit.candidates):
                if item in consumed:
                    action["features"] = [*action["features"], CONSUMED_FEATURE]
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
