"""Generator mode: the service proposes the candidates itself (Rank by ``userId``, no actions).

Before the first event the simulator loads what a client would have: the catalog items known
before the run (``POST /catalog/items``) and the users' past interactions (``POST
/interactions``) -- the MovieLens ratings of each rater, or, for synthetic users, a few items
each drawn in proportion to their true attraction. Items held back by the world are added when
they are released, cold (genres only). The service fits its generators on the first Rank by
``userId`` and stores the rewards of those events as interactions itself.

The world's ground truth covers any catalog item, so the value of whatever the generators
propose is exact; the oracle then picks from the whole released catalog.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np

from personalize.movielens import load_ratings
from simulator.config import SimConfig
from simulator.items import GENRES, Catalog
from simulator.transport import Transport
from simulator.world import Visit, World

__all__ = ["CatalogLoader", "item_row", "initial_interactions", "CHUNK"]

#: Rows per catalog/interactions call (the service accepts at most 10,000).
CHUNK = 10_000
#: Past interactions drawn for each synthetic user.
SYNTHETIC_HISTORY = 20


def item_row(catalog: Catalog, row: int) -> dict[str, Any]:
    """A catalog item as the service stores it: genres always, popularity and rating once known."""
    features: dict[str, Any] = {"genres": [GENRES[g] for g in np.flatnonzero(catalog.genres[row])]}
    for extra in catalog.features[row][1:]:
        features.update(extra.get("stats", {}))
    return {"id": catalog.ids[row], "features": features}


def _chunks(rows: Sequence[dict[str, Any]]) -> Iterator[Sequence[dict[str, Any]]]:
    for start in range(0, len(rows), CHUNK):
        yield rows[start:start + CHUNK]


def initial_interactions(config: SimConfig, catalog: Catalog, world: World) -> list[dict[str, Any]]:
    """Each initial user's past: MovieLens ratings (movielens users) or attraction-weighted draws."""
    known = catalog.arrival == 0
    out: list[dict[str, Any]] = []
    if config.users.source == "movielens" and config.items.source == "movielens":
        slots: dict[str, int] = {}
        row_of = {item_id: row for row, item_id in enumerate(catalog.ids)}
        for user, item, stars, timestamp in load_ratings():
            slot = slots.setdefault(user, len(slots))  # the order fit_movielens_preferences gives the raters
            if known[row_of[item]]:
                out.append({"userId": world.user_id(slot), "itemId": item, "type": "rating", "value": stars,
                            "timestamp": timestamp})
        return out
    rng = np.random.default_rng([config.seed, 8])
    rows = np.flatnonzero(known)
    for slot in range(len(world.population)):
        visit = Visit(step=0, slot=slot, time=0, device=0, candidates=rows, uniforms=np.zeros(1), churn_uniform=1.0,
                      drift=np.zeros(len(GENRES)))
        weights = world.attractions(visit)
        picked = rng.choice(rows, size=min(SYNTHETIC_HISTORY, len(rows)), replace=False, p=weights / weights.sum())
        for k, item in enumerate(picked):
            out.append({"userId": world.user_id(slot), "itemId": catalog.ids[item], "type": "rating",
                        "value": 4.0, "timestamp": 1_600_000_000 + k})
    return out


class CatalogLoader:
    """Loads a service's catalog and interactions, then adds each held-back item when it is released."""

    def __init__(self, transport: Transport, catalog: Catalog):
        self.transport = transport
        self.catalog = catalog
        held = np.flatnonzero(catalog.arrival > 0)
        self.pending = held[np.argsort(catalog.arrival[held], kind="stable")]
        self.next = 0

    def load(self, interactions: Sequence[dict[str, Any]]) -> None:
        rows = [item_row(self.catalog, row) for row in np.flatnonzero(self.catalog.arrival == 0)]
        for chunk in _chunks(rows):
            self.transport.post("/catalog/items", {"items": list(chunk)})
        for chunk in _chunks(interactions):
            self.transport.post("/interactions", {"interactions": list(chunk)})

    def release(self, step: int) -> None:
        """Add the items released up to ``step`` (cold: genres only)."""
        start = self.next
        while self.next < len(self.pending) and self.catalog.arrival[self.pending[self.next]] <= step:
            self.next += 1
        if self.next > start:
            self.transport.post("/catalog/items",
                                {"items": [item_row(self.catalog, row) for row in self.pending[start:self.next]]})
