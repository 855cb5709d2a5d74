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
from functools import cached_property
from typing import Any, ClassVar, Mapping, Protocol, Self, Sequence, runtime_checkable

import numpy as np
from scipy import sparse

from personalize.catalog import TrainingData
from personalize.config import Settings

__all__ = ["AllowedItems", "CandidateRequest", "Source", "ScoredItem", "Generator", "ScoringGenerator", "NoConfig", "RatingPredictor",
           "normalized"]


@dataclass(frozen=True, eq=False)
class AllowedItems:
    """The only items a request may receive (the matches of a Rank's metadata ``filter``).

    Held as a boolean mask over one catalog order (``item_ids``, digest ``key``: see
    ``catalog.catalog_key``): a generator fitted on the same catalog reads the mask as it is;
    any other asks ``item_id in allowed``.
    """

    item_ids: tuple[str, ...]
    mask: np.ndarray
    key: bytes
    index: Mapping[str, int]  # item id -> position in item_ids

    @cached_property
    def ids(self) -> frozenset[str]:
        return frozenset(np.asarray(self.item_ids, dtype=object)[self.mask].tolist())

    def __contains__(self, item_id: object) -> bool:
        position = self.index.get(item_id) if isinstance(item_id, str) else None
        return position is not None and bool(self.mask[position])

    def mask_for(self, item_ids: Sequence[str], key: bytes | None = None) -> np.ndarray:
        """The mask over ``item_ids`` (a generator's catalog order, whose digest is ``key`` if known)."""
        if key == self.key:
            return self.mask
        ids = self.ids
        return np.fromiter((item in ids for item in item_ids), dtype=bool, count=len(item_ids))


@dataclass(frozen=True)
class CandidateRequest:
    """Who the candidates are for. ``seed`` makes any random draw reproducible (it comes from the event id).

    ``session_items``: an (often anonymous) visitor's recent items, for item-to-item generators; they
    are never proposed. ``allowed``: None, or the only items that may be proposed (a metadata filter).
    """

    user_id: str | None = None
    current_item: str | None = None
    exclude: frozenset[str] = frozenset()
    seed: int = 0
    session_items: tuple[str, ...] = ()
    allowed: AllowedItems | None = None


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


@runtime_checkable
class RatingPredictor(Protocol):
    """A generator that also predicts explicit ratings (svd); ``evaluate-generators`` reports its RMSE.

    Any generator class with this method is one: nothing to register.
    """

    def predict_ratings(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """A finite predicted rating for each ``(user id, item id)``, unknown ids included (fall back, e.g. to the mean)."""
        ...


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
    catalog_key: bytes | None = None  # set by fit; None in models stored before it existed

    def fit(self, data: TrainingData) -> None:
        self.item_ids = np.asarray(data.item_ids, dtype=object)
        self.catalog_key = data.catalog_key
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

    def session_positions(self, request: CandidateRequest) -> np.ndarray:
        """Catalog positions of the request's session items that this generator knows."""
        known = [self.item_index[item] for item in request.session_items if item in self.item_index]
        return np.unique(np.array(known, dtype=np.int64))

    def history(self, request: CandidateRequest) -> sparse.csr_matrix | None:
        """The user's items plus the session's, as a 1 x items row of interaction values (None: neither)."""
        row = self.user_row(request.user_id)
        session = self.session_positions(request)
        if row is None and not session.size:
            return None
        vector = self.seen[row] if row is not None else sparse.csr_matrix((1, len(self.item_ids)))
        if session.size:
            indicator = sparse.csr_matrix((np.ones(session.size), (np.zeros(session.size, dtype=np.int64), session)),
                                          shape=(1, len(self.item_ids)))
            vector = vector.maximum(indicator)  # a session item counts at least as one interaction
        return vector.tocsr()

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
        for item in (request.current_item, *request.exclude, *request.session_items):
            index = self.item_index.get(item) if item is not None else None
            if index is not None:
                scores[index] = -np.inf
        if request.allowed is not None:
            scores[~request.allowed.mask_for(self.item_ids, self.catalog_key)] = -np.inf
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
