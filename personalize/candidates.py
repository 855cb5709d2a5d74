"""The candidate service: fit, persist and load generators, and propose candidates for a Rank call.

``CandidateEngine.propose`` asks the named generators for candidates, merges duplicates
(reciprocal-rank fusion), fills ``serendipity`` x ``n`` of the slots with the ``serendipity``
generator, and describes each candidate to the bandit: its catalog features (namespace
``item``) plus its provenance (namespace ``gen``): for every generator that proposed it a flag
``<name>``, its min-max normalized score ``<name>_score`` and reciprocal rank ``<name>_rrank``.
With the default ``-q ca`` the bandit crosses these with the context, so it learns per context
which generator to trust.

The only randomness (the serendipity draw) is seeded from the event id, and the candidate set
is logged as the event's actions: the bandit's logged probability is the probability of the
chosen item *given that candidate set*, which is exactly what off-policy estimators need.

Models swap atomically (one attribute assignment of an immutable snapshot), so Rank calls
never wait for a refresh.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker
from threadpoolctl import threadpool_limits

from personalize.catalog import TrainingData, item_tokens, load_training_data
from personalize.config import Settings
from personalize.db_health import DatabaseHealth
from personalize.filters import CatalogColumns, ItemFilter
from personalize.generator import CandidateRequest, Generator, ScoredItem, normalized
from personalize.models import GeneratorModel, Item
from personalize.plugins import (
    UnknownGeneratorError, UntrainedGeneratorError, default_generators, generator_classes, make_generator,
)

__all__ = [
    "Candidate", "CandidateEngine", "UnknownGeneratorError", "CURRENT_ITEM_FEATURE",
    "fit_generators", "save_generators", "current_item", "diversify",
]

log = logging.getLogger(__name__)

#: A context feature with this name tells item-to-item generators what the user is looking at.
CURRENT_ITEM_FEATURE = "currentItemId"
#: Versions of each generator's model kept in the database.
MODELS_KEPT = 3
#: Seconds between checks for deactivated items (cheap: one indexed query).
INACTIVE_POLL_SECONDS = 5.0
#: Reciprocal-rank-fusion constant (Cormack et al.): damps the weight of the very top ranks.
RRF_K = 60
SERENDIPITY = "serendipity"


@dataclass(frozen=True)
class Candidate:
    """One proposed action: Personalizer-style feature objects and the generators that proposed it."""

    item_id: str
    features: list[dict[str, Any]]
    generators: list[dict[str, Any]]


@dataclass(frozen=True)
class _Snapshot:
    generators: Mapping[str, Generator]
    model_ids: Mapping[str, int]
    trained_at: Mapping[str, float]
    item_features: Mapping[str, dict[str, Any]]
    columns: CatalogColumns  # the same items in catalog order (load_training_data's), for metadata filters


def fit_generators(data: TrainingData, names: Sequence[str] | None = None,
                   settings: Settings | None = None) -> dict[str, tuple[Generator, float]]:
    """Fit the named generators (default: ``default_generators``, with those of the ``generators`` setting),
    configured by ``settings`` when given; returns each with its fit time in seconds."""
    fitted = {}
    for name in names or default_generators(settings.generator_names if settings else ()):
        generator = make_generator(name, settings)
        start = time.perf_counter()
        generator.fit(data)
        fitted[name] = (generator, time.perf_counter() - start)
    return fitted


def save_generators(session: Session, generators: Mapping[str, Generator], now: float | None = None) -> dict[str, int]:
    """Store each generator's model as a new version, prune old versions; returns the new row ids."""
    now = time.time() if now is None else now
    ids = {}
    for name, generator in generators.items():
        row = GeneratorModel(name=name, created_at=now, data=generator.save())
        session.add(row)
        session.flush()
        ids[name] = row.id
        keep = select(GeneratorModel.id).where(GeneratorModel.name == name).order_by(GeneratorModel.id.desc()).limit(MODELS_KEPT)
        session.execute(delete(GeneratorModel).where(GeneratorModel.name == name, GeneratorModel.id.not_in(keep.scalar_subquery())))
    return ids


def current_item(context: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None) -> str | None:
    """The ``currentItemId`` feature of a context (a feature object, a list of them, or None)."""
    objects = [context] if isinstance(context, Mapping) else list(context or [])
    while objects:
        obj = objects.pop(0)
        value = obj.get(CURRENT_ITEM_FEATURE)
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            return str(value)
        objects.extend(v for v in obj.values() if isinstance(v, Mapping))
    return None


def diversify(ranking: Sequence[str], item_features: Mapping[str, Mapping[str, Any]], strength: float, keep: int = 1) -> list[str]:
    """Reorder the tail of a ranking (maximal marginal relevance): the first ``keep`` items stay put.

    Each later slot takes the item maximizing ``(1 - strength) * relevance - strength * max
    similarity to the items above it``, relevance falling linearly with the original rank and
    similarity being Jaccard over catalog terms. The chosen (first) item and every item's
    probability are untouched, so the logged decision is unchanged.
    """
    head, tail = list(ranking[:keep]), list(ranking[keep:])
    if strength <= 0 or len(tail) < 2:
        return head + tail
    terms = {item: set(item_tokens(item_features.get(item, {}))) for item in ranking}
    relevance = {item: 1.0 - i / len(tail) for i, item in enumerate(tail)}
    max_similarity = {item: max((_jaccard(terms[item], terms[h]) for h in head), default=0.0) for item in tail}
    ordered = head
    while tail:
        best = max(tail, key=lambda item: (1 - strength) * relevance[item] - strength * max_similarity[item])
        tail.remove(best)
        ordered.append(best)
        for item in tail:
            max_similarity[item] = max(max_similarity[item], _jaccard(terms[item], terms[best]))
    return ordered


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


class CandidateEngine:
    """Holds the fitted generators of one service process and proposes candidates for Rank calls."""

    def __init__(self, settings: Settings, sessions: sessionmaker[Session], health: DatabaseHealth | None = None) -> None:
        self.settings = settings
        self.sessions = sessions
        self.health = health  # logs a database outage once instead of a traceback per round
        self._snapshot: _Snapshot | None = None
        self._inactive: frozenset[str] = frozenset()
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def load(self) -> None:
        """Load the newest stored model of every registered generator; fit (and store) those with none."""
        # Candidate scoring is many small matrix products per request: extra BLAS threads only contend.
        threadpool_limits(1, "blas")
        with self._refresh_lock:
            self._snapshot = self._read_models()  # one assignment: rank calls see old or new, never half
        self._poll_inactive()

    def refresh(self) -> bool:
        """Pick up newer stored models, refit those older than the refresh interval; True if a model changed."""
        self._poll_inactive()
        with self._refresh_lock:
            models = self._read_models()
            if self._snapshot is not None and models.model_ids == self._snapshot.model_ids:
                return False
            self._snapshot = models
            return True

    def start_refresh(self) -> None:
        """Start the background thread that refreshes models and the set of deactivated items."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="personalize-candidates", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def propose(
        self,
        user_id: str | None,
        context: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None,
        n: int,
        generators: Sequence[str] | None = None,
        serendipity: float | None = None,
        seed: int = 0,
        exclude: Sequence[str] = (),
        session_items: Sequence[str] = (),
        item_filter: ItemFilter | None = None,
    ) -> list[Candidate]:
        """Up to ``n`` candidates for a user (or a session's items); raises UnknownGeneratorError for a name
        no plugin registers.

        ``exclude`` (Rank's excludedActions), the session's items and items failing ``item_filter`` are
        left out *by the generators*, so each still proposes ``n`` items when the catalog has them.
        """
        snapshot = self._snapshot
        if snapshot is None:
            raise RuntimeError("CandidateEngine.load() has not been called")
        names = list(generators) if generators else list(self.settings.generator_names)
        for name in names:
            if name not in snapshot.generators:
                if name in generator_classes():
                    raise UntrainedGeneratorError(name, list(snapshot.generators))
                raise UnknownGeneratorError(name, list(snapshot.generators))
        share = self.settings.serendipity if serendipity is None else serendipity
        excluded = self._inactive.union(exclude) if exclude else self._inactive
        allowed = item_filter.allowed(snapshot.columns) if item_filter is not None else None
        request = CandidateRequest(user_id, current_item(context), excluded, seed, tuple(session_items), allowed)
        proposals = {name: self._checked(snapshot.generators[name].candidates(request, n), request) for name in names}
        fused: dict[str, float] = {}
        for proposed in proposals.values():
            for rank, item in enumerate(proposed, start=1):
                fused[item.item_id] = fused.get(item.item_id, 0.0) + 1.0 / (RRF_K + rank)
        main = sorted(fused, key=lambda item: -fused[item])  # stable: ties keep first-proposed order
        surprising: list[ScoredItem] = []
        slots = round(share * n)
        if slots and SERENDIPITY in snapshot.generators and SERENDIPITY not in proposals:
            surprising = self._checked(snapshot.generators[SERENDIPITY].candidates(request, slots), request)
            proposals[SERENDIPITY] = surprising
        extra = [s.item_id for s in surprising if s.item_id not in fused]
        chosen = main[: n - len(extra)] + extra
        provenance = _provenance(proposals)
        return [
            Candidate(item, [{"item": dict(snapshot.item_features.get(item, {}))}, {"gen": _gen_features(provenance[item])}], provenance[item])
            for item in chosen
            if item in snapshot.item_features
        ]

    @staticmethod
    def _checked(proposed: list[ScoredItem], request: CandidateRequest) -> list[ScoredItem]:
        """A generator's proposals without what the request rules out (for generators that overlook a rule)."""
        session = set(request.session_items)
        allowed = request.allowed
        return [p for p in proposed if p.item_id not in request.exclude and p.item_id not in session
                and (allowed is None or p.item_id in allowed)]

    def item_features(self, item_id: str) -> dict[str, Any] | None:
        """An item's catalog features as of the loaded snapshot (what the bandit sees); None if unknown."""
        snapshot = self._snapshot
        return None if snapshot is None else snapshot.item_features.get(item_id)

    def unknown_items(self, item_ids: Sequence[str]) -> list[str]:
        """The ids the loaded snapshot has no item for (it may lag the catalog: check the store before refusing)."""
        snapshot = self._snapshot
        known = snapshot.item_features if snapshot is not None else {}
        return [item for item in item_ids if item not in known]

    def filter_report(self, item_filter: ItemFilter) -> tuple[int, list[str]]:
        """(active items matching the filter, the filter's fields no item has): why a filtered Rank found nothing."""
        snapshot = self._snapshot
        if snapshot is None:
            return 0, list(item_filter.fields)
        mask = item_filter.mask(snapshot.columns)
        matching = sum(1 for item in np.asarray(snapshot.columns.item_ids, dtype=object)[mask].tolist() if item not in self._inactive)
        return matching, snapshot.columns.missing(item_filter)

    def diversify(self, ranking: Sequence[str], strength: float, keep: int = 1) -> list[str]:
        """``diversify`` with this engine's catalog features."""
        snapshot = self._snapshot
        return diversify(ranking, snapshot.item_features if snapshot else {}, strength, keep)

    def _run(self) -> None:
        interval = self.settings.generator_refresh_interval
        last = time.monotonic()
        while not self._stop.wait(min(INACTIVE_POLL_SECONDS, interval) if interval > 0 else INACTIVE_POLL_SECONDS):
            try:
                self._poll_inactive()
                if interval > 0 and time.monotonic() - last >= interval:
                    last = time.monotonic()
                    self.refresh()
            except Exception as error:  # keep serving the current models; the next round retries
                if self.health is None or not self.health.failed(error):
                    log.exception("candidate generator refresh failed")

    def _poll_inactive(self) -> None:
        with self.sessions() as session:
            self._inactive = frozenset(session.scalars(select(Item.id).where(Item.active.is_(False))))

    def _read_models(self) -> _Snapshot:
        """Newest stored model per generator; generators with none, or one older than the interval, are refit.

        Sessions stay short (SQLite writers wait for them): fitting happens outside any transaction.
        """
        current = self._snapshot
        interval = self.settings.generator_refresh_interval
        now = time.time()
        generators: dict[str, Generator] = {}
        model_ids: dict[str, int] = {}
        trained_at: dict[str, float] = {}
        stale: list[str] = []
        fitted_here = set(default_generators(self.settings.generator_names))
        with self.sessions() as session:
            newest = {name: row_id for name, row_id in session.execute(
                select(GeneratorModel.name, func.max(GeneratorModel.id)).group_by(GeneratorModel.name)
            )}
            for name, cls in generator_classes().items():
                row_id = newest.get(name)
                if name not in fitted_here and row_id is None:
                    continue  # fitted only when named: absent until trained
                if current is not None and row_id is not None and current.model_ids.get(name) == row_id:
                    generators[name], trained_at[name] = current.generators[name], current.trained_at[name]
                    model_ids[name] = row_id
                elif row_id is not None:
                    row = session.get_one(GeneratorModel, row_id)
                    generators[name], model_ids[name], trained_at[name] = cls.load(row.data), row_id, row.created_at
                if name in fitted_here and (name not in generators or (interval > 0 and now - trained_at[name] >= interval)):
                    stale.append(name)
            rows = session.execute(select(Item.id, Item.features).order_by(Item.id)).all()  # load_training_data's order
        item_features = {row.id: row.features or {} for row in rows}
        columns = CatalogColumns([row.id for row in rows], list(item_features.values()))
        if stale:
            with self.sessions() as session:
                data = load_training_data(session)
            fitted = {name: generator for name, (generator, _) in fit_generators(data, stale, self.settings).items()}
            with self.sessions() as session:
                ids = save_generators(session, fitted, now)
                session.commit()
            for name, generator in fitted.items():
                generators[name], model_ids[name], trained_at[name] = generator, ids[name], now
        return _Snapshot(generators, model_ids, trained_at, item_features, columns)


def _provenance(proposals: Mapping[str, list[ScoredItem]]) -> dict[str, list[dict[str, Any]]]:
    """Per item: which generators (and, inside blends, which components) proposed it, score and rank."""
    out: dict[str, list[dict[str, Any]]] = {}
    for name, proposed in proposals.items():
        scores = normalized(np.array([p.score for p in proposed]))
        for rank, (item, score) in enumerate(zip(proposed, scores), start=1):
            entries = out.setdefault(item.item_id, [])
            entries.append({"name": name, "score": round(float(score), 4), "rank": rank})
            entries.extend({"name": s.name, "score": round(s.score, 4), "rank": s.rank, "via": name} for s in item.sources)
    return out


def _gen_features(provenance: list[dict[str, Any]]) -> dict[str, float]:
    """The ``gen`` namespace: flag, normalized score and reciprocal rank per proposing generator."""
    features: dict[str, float] = {}
    for entry in provenance:
        name = entry["name"]
        if name in features:  # a generator asked for directly wins over the same one inside a blend
            continue
        features[name] = 1.0
        features[f"{name}_score"] = entry["score"]
        features[f"{name}_rrank"] = round(1.0 / entry["rank"], 4)
    return features
