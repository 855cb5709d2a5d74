"""Offline evaluation of candidate generators on a per-user temporal split.

Each user's latest interactions (a share ``holdout`` of their positive ones, at least one,
users with a single interaction stay whole in training) are held out; generators fit on the
rest and propose ``k`` items per test user. Metrics, averaged over test users:

- precision@k: share of the ``k`` proposals that are held-out items (a short list counts as ``k``);
- recall@k: share of the user's held-out items that were proposed;
- NDCG@k: rank-discounted hits over the ideal ordering (binary relevance);
- coverage: share of active catalog items proposed to at least one test user;
- novelty: mean self-information ``-log2(p)`` of proposed items, ``p`` being the share of
  training users who interacted with the item (add-one smoothed): higher means less obvious;
- RMSE, for generators that predict ratings (``personalize.generator.RatingPredictor``, e.g.
  svd): root mean squared error of their predictions of the held-out explicit ratings
  (interactions of type ``rating``; every held-out one of them, its latest value per pair).

The popularity baseline (plain counts, no time decay) is evaluated in the same run.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np

from personalize.catalog import TrainingData
from personalize.generator import CandidateRequest, Generator, RatingPredictor
from personalize.plugins import make_generator
from plugins.popular import PopularConfig, PopularGenerator

__all__ = [
    "GeneratorScores", "holdout_mask", "temporal_split", "evaluate_generators", "evaluate", "rmse", "format_table", "as_json",
    "BASELINE",
]

BASELINE = "baseline:popular"


@dataclass(frozen=True)
class GeneratorScores:
    name: str
    k: int
    users: int
    precision: float
    recall: float
    ndcg: float
    coverage: float
    novelty: float
    fit_seconds: float
    #: Root mean squared error of the held-out ratings; None for generators that predict no ratings.
    rmse: float | None = None


def holdout_mask(data: TrainingData, holdout: float) -> np.ndarray:
    """True for each user's latest positive interactions (a share ``holdout``, at least one, of users with two or more)."""
    positive = np.flatnonzero(data.values > 0)
    order = positive[np.lexsort((data.timestamps[positive], data.users[positive]))]  # by user, then time
    held = np.zeros(len(data.values), dtype=bool)
    users = data.users[order]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]]) if order.size else np.array([], dtype=int)
    for start, end in zip(starts, np.r_[starts[1:], order.size]):
        count = end - start
        if count >= 2:
            held[order[end - max(1, int(round(holdout * count))): end]] = True
    return held


def temporal_split(data: TrainingData, holdout: float) -> tuple[TrainingData, dict[int, set[int]]]:
    """Training data without each user's latest positive interactions, and those held-out items per user."""
    held = holdout_mask(data, holdout)
    test: dict[int, set[int]] = {}
    for user, item in zip(data.users[held].tolist(), data.items[held].tolist()):
        test.setdefault(user, set()).add(item)
    train = data.with_interactions(~held)
    for user in list(test):  # an item seen in training is not a prediction target
        test[user] -= set(train.user_items[user].indices.tolist())
        if not test[user]:
            del test[user]
    return train, test


def evaluate_generators(
    data: TrainingData,
    names: Sequence[str],
    k: int = 10,
    holdout: float = 0.2,
    progress: Callable[[str], None] | None = None,
) -> list[GeneratorScores]:
    """Fit each named generator and the popularity baseline on the split; score them on the held-out items."""
    generators: list[tuple[str, Generator]] = [(BASELINE, PopularGenerator(PopularConfig(half_life_days=None)))]
    generators += [(name, make_generator(name)) for name in names]
    return evaluate(data, generators, k, holdout, progress)


def evaluate(
    data: TrainingData,
    generators: Sequence[tuple[str, Generator]],
    k: int = 10,
    holdout: float = 0.2,
    progress: Callable[[str], None] | None = None,
) -> list[GeneratorScores]:
    """Fit each (label, unfitted generator) on the split and score it: for configured instances (bench, tuning)."""
    train, test = temporal_split(data, holdout)
    rating_users, rating_items, held_ratings = data.with_interactions(holdout_mask(data, holdout)).ratings()
    rating_pairs = [(data.user_ids[u], data.item_ids[i]) for u, i in zip(rating_users.tolist(), rating_items.tolist())]
    counts = np.bincount(train.items[train.values > 0], minlength=len(train.item_ids))
    self_information = -np.log2((counts + 1.0) / (len(train.user_ids) + 1.0))
    active = max(int(train.item_active.sum()), 1)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    results = []
    for name, generator in generators:
        if progress:
            progress(name)
        start = time.perf_counter()
        generator.fit(train)
        fit_seconds = time.perf_counter() - start
        precisions, recalls, ndcgs, novelties, proposed = [], [], [], [], set()
        for user, relevant in test.items():
            items = generator.candidates(CandidateRequest(train.user_ids[user], seed=user), k)
            positions = [train.item_index[c.item_id] for c in items]
            hits = np.array([p in relevant for p in positions], dtype=float)
            precisions.append(hits.sum() / k)
            recalls.append(hits.sum() / len(relevant))
            ideal = discounts[: min(len(relevant), k)].sum()
            ndcgs.append(float(hits @ discounts[: len(hits)]) / ideal)
            if positions:
                novelties.append(float(self_information[positions].mean()))
            proposed.update(positions)
        results.append(GeneratorScores(
            name=name, k=k, users=len(test),
            precision=float(np.mean(precisions)) if precisions else 0.0,
            recall=float(np.mean(recalls)) if recalls else 0.0,
            ndcg=float(np.mean(ndcgs)) if ndcgs else 0.0,
            coverage=len(proposed) / active,
            novelty=float(np.mean(novelties)) if novelties else math.nan,
            fit_seconds=fit_seconds,
            rmse=rmse(generator, rating_pairs, held_ratings) if isinstance(generator, RatingPredictor) else None,
        ))
    return results


def rmse(predictor: RatingPredictor, pairs: list[tuple[str, str]], ratings: np.ndarray) -> float | None:
    """Root mean squared error of ``predictor`` on the (user, item) pairs; None when there are none."""
    if not pairs:
        return None
    predicted = np.asarray(predictor.predict_ratings(pairs), dtype=np.float64)
    if predicted.shape != ratings.shape or not np.isfinite(predicted).all():
        raise ValueError(f"{type(predictor).__name__}.predict_ratings must return one finite rating per pair")
    return float(np.sqrt(np.mean((predicted - ratings) ** 2)))


def format_table(results: Sequence[GeneratorScores]) -> str:
    """A plain-text table, one row per generator, with each metric's ratio to the baseline's."""
    base = next((r for r in results if r.name == BASELINE), None)
    k = results[0].k if results else 0
    lines = [f"{'generator':<18} {'precision@' + str(k):>12} {'recall@' + str(k):>10} {'ndcg@' + str(k):>10} {'vs base':>8} "
             f"{'coverage':>9} {'novelty':>8} {'rmse':>7} {'fit s':>7}"]
    for r in results:
        ratio = f"{r.ndcg / base.ndcg:.2f}x" if base and base.ndcg > 0 else "-"
        error = "-" if r.rmse is None else f"{r.rmse:.4f}"
        lines.append(f"{r.name:<18} {r.precision:>12.4f} {r.recall:>10.4f} {r.ndcg:>10.4f} {ratio:>8} {r.coverage:>9.4f} "
                     f"{r.novelty:>8.2f} {error:>7} {r.fit_seconds:>7.2f}")
    if results:
        lines.append(f"({results[0].users} test users; precision/recall/NDCG/coverage in 0..1, novelty in bits; "
                     "rmse of held-out ratings, for rating predictors)")
    return "\n".join(lines)


def as_json(results: Sequence[GeneratorScores]) -> list[dict[str, float | int | str]]:
    return [asdict(r) for r in results]
