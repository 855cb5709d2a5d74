"""What a candidate generator is: a config dataclass plus a class that fits, proposes, saves and loads.

A generator proposes items for one request (a user, optionally a current item) from what it
learned in ``fit``. It never ranks the final list: the bandit does, using each candidate's
provenance (see ``personalize.candidates``). Plugins return generator classes from the
``register_generators`` hook; ``personalize.testing.GeneratorContract`` checks them.

Most generators score every catalog item and let :class:`ScoringGenerator` do the common
work (skip inactive, already-seen and excluded items, keep the best ``n``); a generator that
cannot score the whole catalog subclasses :class:`Generator` directly.
"""

from __future__ import annotations

import pickle
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import numpy as np
from scipy import sparse

from personalize.catalog import TrainingData
from personalize.config import Settings

__all__ = ["CandidateRequest", "Source", "ScoredItem", "Generator", "ScoringGenerator", "NoConfig", "normalized"]


@dataclass(frozen=True)
class CandidateRequest:
    """Who the candidates are for. ``seed`` makes any random draw reproducible (it comes from the event id)."""

    user_id: str | None = None
    current_item: str | None = None
    exclude: frozenset[str] = frozenset()
    seed: int = 0


@dataclass(frozen=True)
class Source:
    """A component that proposed an item inside a blending generator: its normalized score and rank."""

    name: str
    score: float
    rank: int


@dataclass(frozen=True)
class ScoredItem:
    """One proposed item. ``sources`` is filled by generators that blend others (hybrid, serendipity)."""

    item_id: str
    score: float
    sources: tuple[Source, ...] = ()


@dataclass(frozen=True)
class NoConfig:
    """Config of a generator that has nothing to configure."""


class Generator(ABC):
    """Base class of every candidate generator. Subclasses set ``name`` and, if configurable, ``Config``."""

    name: ClassVar[str]
    Config: ClassVar[type] = NoConfig
    #: Fitted when no generator is named (``personalize train``, ``POST /generators/train`` with no names, a server
    #: fitting what has no stored model). False for generators whose fit is heavy (a neural model encoding the
    #: catalog): they are fitted only when named, or listed in the ``generators`` setting.
    fit_by_default: ClassVar[bool] = True

    def __init__(self, config: Any = None) -> None:
        self.config = self.Config() if config is None else config

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """A new generator configured from the service's settings; the default ignores them.

        Override it when a setting chooses something only the deployment knows (a model's path).
        """
        return cls()

    @abstractmethod
    def fit(self, data: TrainingData) -> None:
        """Learn from the catalog and interactions; may be called again to refit from scratch."""

    @abstractmethod
    def candidates(self, request: CandidateRequest, n: int) -> list[ScoredItem]:
        """At most ``n`` active items, best first (scores non-increasing); [] when there is nothing to say."""

    def save(self) -> bytes:
        """What was learned, as bytes for the ``generator_models`` table.

        Pickle: these rows are written only by ``personalize train`` or the service itself and are as
        trusted as the database; never load them from elsewhere.
        """
        return pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def load(cls, data: bytes) -> Self:
        obj = pickle.loads(data)
        if not isinstance(obj, cls):
            raise TypeError(f"stored model is a {type(obj).__name__}, not a {cls.__name__}")
        return obj


def normalized(scores: np.ndarray) -> np.ndarray:
    """Min-max scale to 0..1 (all ones when the scores are equal), so scores of generators compare."""
    if scores.size == 0:
        return scores.astype(np.float64)
    low, high = float(scores.min()), float(scores.max())
    if high - low <= 1e-12:
        return np.ones_like(scores, dtype=np.float64)
    return (scores - low) / (high - low)


class ScoringGenerator(Generator):
    """A generator that scores the whole catalog at once; this class handles filtering and top-n.

    Subclasses implement ``fit_scores(data)`` and ``scores(request)``, returning one float per
    catalog item (``-inf`` for "no opinion") or None when the request is outside what they know.
    """

    item_ids: np.ndarray
    item_index: dict[str, int]
    user_index: dict[str, int]
    active: np.ndarray
    seen: sparse.csr_matrix

    def fit(self, data: TrainingData) -> None:
        self.item_ids = np.asarray(data.item_ids, dtype=object)
        self.item_index = data.item_index
        self.user_index = data.user_index
        self.active = data.item_active.copy()
        self.seen = data.user_items
        self.fit_scores(data)

    @abstractmethod
    def fit_scores(self, data: TrainingData) -> None:
        """Learn what ``scores`` needs."""

    @abstractmethod
    def scores(self, request: CandidateRequest) -> np.ndarray | None:
        """One score per catalog item, higher is better; ``-inf`` excludes an item; None means no opinion."""

    def user_row(self, user_id: str | None) -> int | None:
        return None if user_id is None else self.user_index.get(user_id)

    def top(self, request: CandidateRequest, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Catalog positions and scores of the best ``n`` proposable items, best first (for blending in NumPy)."""
        empty = (np.zeros(0, dtype=np.int64), np.zeros(0))
        if n <= 0 or len(self.item_ids) == 0:
            return empty
        raw = self.scores(request)
        if raw is None:
            return empty
        scores = np.where(self.active, np.asarray(raw, dtype=np.float64), -np.inf)
        row = self.user_row(request.user_id)
        if row is not None:
            scores[self.seen.indices[self.seen.indptr[row]:self.seen.indptr[row + 1]]] = -np.inf
        for item in (request.current_item, *request.exclude):
            index = self.item_index.get(item) if item is not None else None
            if index is not None:
                scores[index] = -np.inf
        finite = np.flatnonzero(np.isfinite(scores))
        if finite.size == 0:
            return empty
        k = min(n, finite.size)
        top = finite[np.argpartition(-scores[finite], k - 1)[:k]] if k < finite.size else finite
        top = top[np.lexsort((top, -scores[top]))]  # best first, ties by catalog order: deterministic
        return top, scores[top]

    def candidates(self, request: CandidateRequest, n: int) -> list[ScoredItem]:
        positions, scores = self.top(request, n)
        return [ScoredItem(item, score) for item, score in zip(self.item_ids[positions].tolist(), scores.tolist())]
