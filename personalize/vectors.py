"""Nearest items by vector: cosine similarity, exact in NumPy for small catalogs, an HNSW index above.

Generators that represent items as vectors (the catalog's own ``embedding``, or a text model's
encoding) subclass :class:`VectorGenerator`: they return one vector per item from
``item_vectors`` and get the rest — a user's profile (the recency-weighted mean of the vectors
of their latest items), "more like this" for the current item, and a search that skips seen,
excluded, inactive and current items and still returns ``n`` items when the catalog has them.

Below ``ANN_MIN_ITEMS`` vectors the search is exact (one matrix-vector product). At or above it,
an approximate index answers: `usearch <https://github.com/unum-cloud/usearch>`_'s HNSW graph.
usearch was chosen over hnswlib (no release since 2023) and faiss-cpu (a wheel ten times the
size, an API built for batch jobs): it is maintained, ships wheels for every supported Python,
depends on NumPy only, and serializes an index to bytes. Its index does not pickle, so
:class:`VectorIndex` pickles the bytes of ``Index.save()`` instead, and the generator's model
stays one pickled object (``Generator.save``).

ANN search cannot filter inside the graph, so exclusions are met by over-fetching: ask for
``n`` plus the number of excluded items the index holds, drop those, and ask for twice as many
again in the rare case the graph returned fewer.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse

from personalize.catalog import TrainingData
from personalize.generator import CandidateRequest, Generator, ScoredItem

__all__ = ["ANN_MIN_ITEMS", "VectorConfig", "VectorIndex", "VectorGenerator", "unit_rows"]

#: Catalogs with at least this many item vectors are searched through the HNSW index; smaller ones exactly.
#: Exact search of 20,000 items took 0.4 ms p50 at 64 dimensions and 1.8 ms at 384 (one core, load average 6);
#: the index answered in 0.67 ms p50 at 1,000,000 items (bench/ann.py, docs/embeddings.md).
ANN_MIN_ITEMS = 20_000


@dataclass(frozen=True)
class VectorConfig:
    #: A user's profile is the weighted mean of the vectors of their latest this-many items.
    history: int = 20
    #: Recency weighting of the profile: the k-th latest item weighs 0.5 ** (k / half_life).
    half_life: float = 5.0
    #: Item vectors from which on the approximate (HNSW) index answers instead of exact search.
    ann_min_items: int = ANN_MIN_ITEMS
    #: HNSW graph edges per node ("M"): more is better recall, more memory and build time.
    connectivity: int = 16
    #: HNSW search breadth at build time ("efConstruction").
    expansion_add: int = 64
    #: HNSW search breadth at query time ("ef"); usearch widens it to the number of results asked for.
    expansion_search: int = 64


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 as float32 (rows of zeros stay zeros: items without a vector)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


class VectorIndex:
    """Cosine nearest neighbours among the catalog positions in ``usable`` (unit vectors, inner product)."""

    def __init__(self, vectors: np.ndarray, usable: np.ndarray, config: VectorConfig) -> None:
        self.vectors = vectors
        self.usable = usable
        self.size = int(usable.sum())
        self.ann: Any = None
        if self.size >= config.ann_min_items and self.size:
            from usearch.index import Index

            index = Index(ndim=vectors.shape[1], metric="ip", dtype="f32", multi=False,
                          connectivity=config.connectivity, expansion_add=config.expansion_add,
                          expansion_search=config.expansion_search)
            positions = np.flatnonzero(usable)
            index.add(positions.astype(np.uint64), vectors[positions], threads=0)
            self.ann = index

    def search(self, query: np.ndarray, n: int, excluded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions and cosine similarities of the ``n`` nearest usable items not in ``excluded``
        (sorted positions), best first; ties by catalog order in exact search."""
        if n <= 0 or self.size == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        if self.ann is None:
            return self._exact(query, n, excluded)
        held = int(self.usable[excluded].sum()) if excluded.size else 0
        count = min(n + held, self.size)
        while True:
            matches = self.ann.search(query, count, threads=1)
            positions = matches.keys.astype(np.int64)
            keep = ~np.isin(positions, excluded, assume_unique=True) if excluded.size else np.ones(len(positions), bool)
            positions, scores = positions[keep][:n], 1.0 - matches.distances[keep][:n].astype(np.float64)
            if len(positions) >= n:
                return positions, scores
            if count >= self.size:  # HNSW can miss a few items even when asked for all: exact finds every one
                return self._exact(query, n, excluded)
            count = min(2 * count, self.size)

    def _exact(self, query: np.ndarray, n: int, excluded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scores = np.where(self.usable, self.vectors @ query, -np.inf).astype(np.float64)
        scores[excluded] = -np.inf
        finite = np.flatnonzero(np.isfinite(scores))
        k = min(n, finite.size)
        if k == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        top = finite[np.argpartition(-scores[finite], k - 1)[:k]] if k < finite.size else finite
        top = top[np.lexsort((top, -scores[top]))]
        return top, scores[top]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self.ann is not None:  # usearch's Index does not pickle; its own serialization does
            state["ann"] = bytes(self.ann.save())
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if state.get("ann") is not None:
            from usearch.index import Index

            state["ann"] = Index.restore(state["ann"])
        self.__dict__.update(state)


class VectorGenerator(Generator):
    """Proposes the items nearest to the current item's vector, or to the user's profile vector.

    Subclasses implement ``item_vectors(data)``: one row per catalog item (a row of zeros for an
    item without a vector), or None when there are none.
    """

    Config = VectorConfig
    item_ids: np.ndarray
    item_index: dict[str, int]
    user_index: dict[str, int]
    seen: sparse.csr_matrix
    index: VectorIndex
    recent_indptr: np.ndarray
    recent_items: np.ndarray

    @abstractmethod
    def item_vectors(self, data: TrainingData) -> np.ndarray | None:
        """One vector per catalog item (zeros for none), or None when no item has one."""

    def fit(self, data: TrainingData) -> None:
        self.item_ids = np.asarray(data.item_ids, dtype=object)
        self.item_index = data.item_index
        self.catalog_key = data.catalog_key  # a Rank filter's mask over this catalog order is used as it is
        self.user_index = data.user_index
        self.seen = data.user_items
        raw = self.item_vectors(data)
        vectors = unit_rows(raw) if raw is not None else np.zeros((len(data.item_ids), 0), dtype=np.float32)
        has_vector = np.any(vectors != 0, axis=1) if vectors.shape[1] else np.zeros(len(data.item_ids), dtype=bool)
        self.index = VectorIndex(vectors, has_vector & data.item_active, self.config)
        self._fit_history(data, has_vector)

    def _fit_history(self, data: TrainingData, has_vector: np.ndarray) -> None:
        """Per user, the catalog positions of their latest ``history`` positive interactions with a vector."""
        keep = (data.values > 0) & has_vector[data.items] if len(data.items) else np.zeros(0, dtype=bool)
        users, items, stamps = data.users[keep], data.items[keep], data.timestamps[keep]
        order = np.lexsort((-stamps, users))  # by user, latest first
        users, items = users[order], items[order]
        starts = np.searchsorted(users, np.arange(len(data.user_ids) + 1))
        rank = np.arange(len(users)) - np.repeat(starts[:-1], np.diff(starts))
        latest = rank < self.config.history
        self.recent_items = items[latest].astype(np.int64)
        self.recent_indptr = np.searchsorted(users[latest], np.arange(len(data.user_ids) + 1))

    def query(self, request: CandidateRequest) -> np.ndarray | None:
        """The vector to search near: the current item's, else the profile of the session's items (latest
        last) followed by the user's latest items; None when there is none."""
        vectors = self.index.vectors
        current = self.item_index.get(request.current_item) if request.current_item else None
        if current is not None and vectors.shape[1] and vectors[current].any():
            return vectors[current]
        row = self.user_index.get(request.user_id) if request.user_id is not None else None
        session = [self.item_index[item] for item in reversed(request.session_items) if item in self.item_index]
        recent = np.asarray(session, dtype=np.int64)
        if row is not None:
            recent = np.concatenate([recent, self.recent_items[self.recent_indptr[row]:self.recent_indptr[row + 1]]])
        recent = recent[vectors[recent].any(axis=1)] if recent.size and vectors.shape[1] else recent[:0]
        if recent.size == 0:
            return None
        weights = 0.5 ** (np.arange(recent.size) / self.config.half_life)
        profile = (weights @ vectors[recent]).astype(np.float32)
        norm = float(np.linalg.norm(profile))
        return profile / norm if norm > 0 else None

    def excluded(self, request: CandidateRequest) -> np.ndarray:
        """Sorted catalog positions never to propose: the user's items, the current item, ``request.exclude``,
        the session's items and, with a Rank filter, every item it does not allow."""
        parts = []
        row = self.user_index.get(request.user_id) if request.user_id is not None else None
        if row is not None:
            parts.append(self.seen.indices[self.seen.indptr[row]:self.seen.indptr[row + 1]])
        named = [self.item_index.get(item) for item in (request.current_item, *request.exclude, *request.session_items)
                 if item is not None]
        parts.append(np.array([p for p in named if p is not None], dtype=np.int64))
        if request.allowed is not None:
            parts.append(np.flatnonzero(~request.allowed.mask_for(self.item_ids, getattr(self, "catalog_key", None))))
        return np.unique(np.concatenate(parts).astype(np.int64)) if parts else np.zeros(0, dtype=np.int64)

    def candidates(self, request: CandidateRequest, n: int) -> list[ScoredItem]:
        if n <= 0 or len(self.item_ids) == 0:
            return []
        query = self.query(request)
        if query is None:
            return []
        positions, scores = self.index.search(query, n, self.excluded(request))
        return [ScoredItem(item, score) for item, score in zip(self.item_ids[positions].tolist(), scores.tolist())]
