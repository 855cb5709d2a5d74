"""Offline evaluation of candidate generators on a per-user temporal split.

Each user's latest interactions (a share ``holdout`` of their positive ones, at least one,
users with a single interaction stay whole in training) are held out; generators fit on the
rest and propose ``k`` items per test user. Metrics, averaged over test users:

- recall@k: share of the user's held-out items that were proposed;
- NDCG@k: rank-discounted hits over the ideal ordering (binary relevance);
- coverage: share of active catalog items proposed to at least one test user;
- novelty: mean self-information ``-log2(p)`` of proposed items, ``p`` being the share of
  training users who interacted with the item (add-one smoothed): higher means less obvious.

The popularity baseline (plain counts, no time decay) is evaluated in the same run.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np

from personalize.catalog import TrainingData
from personalize.generator import CandidateRequest, Generator
from personalize.plugins import make_generator
from plugins.popular import PopularConfig, PopularGenerator

__all__ = ["GeneratorScores", "temporal_split", "evaluate_generators", "format_table", "as_json", "BASELINE"]

BASELINE = "baseline:popular"


@dataclass(frozen=True)
class GeneratorScores:
    name: str
    k: int
    users: int
    recall: float
    ndcg: float
    coverage: float
    novelty: float
    fit_seconds: float


def temporal_split(data: TrainingData, holdout: float) -> tuple[TrainingData, dict[int, set[int]]]:
    """Training data without each user's latest positive interactions, and those held-out items per user."""
    positive = np.flatnonzero(data.values > 0)
    order = positive[np.lexsort((data.timestamps[positive], data.users[positive]))]  # by user, then time
    train_mask = np.ones(len(data.values), dtype=bool)
    test: dict[int, set[int]] = {}
    users = data.users[order]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]]) if order.size else np.array([], dtype=int)
    for start, end in zip(starts, np.r_[starts[1:], order.size]):
        count = end - start
        if count < 2:
            continue
        held = order[end - max(1, int(round(holdout * count))): end]
        train_mask[held] = False
        test[int(users[start])] = {int(i) for i in data.items[held]}
    train = data.with_interactions(train_mask)
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
    train, test = temporal_split(data, holdout)
    counts = np.bincount(train.items[train.values > 0], minlength=len(train.item_ids))
    self_information = -np.log2((counts + 1.0) / (len(train.user_ids) + 1.0))
    active = max(int(train.item_active.sum()), 1)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    generators: list[tuple[str, Generator]] = [(BASELINE, PopularGenerator(PopularConfig(half_life_days=None)))]
    generators += [(name, make_generator(name)) for name in names]
    results = []
    for name, generator in generators:
        if progress:
            progress(name)
        start = time.perf_counter()
        generator.fit(train)
        fit_seconds = time.perf_counter() - start
        recalls, ndcgs, novelties, proposed = [], [], [], set()
        for user, relevant in test.items():
            items = generator.candidates(CandidateRequest(train.user_ids[user], seed=user), k)
            positions = [train.item_index[c.item_id] for c in items]
            hits = np.array([p in relevant for p in positions], dtype=float)
            recalls.append(hits.sum() / len(relevant))
            ideal = discounts[: min(len(relevant), k)].sum()
            ndcgs.append(float(hits @ discounts[: len(hits)]) / ideal)
            if positions:
                novelties.append(float(self_information[positions].mean()))
            proposed.update(positions)
        results.append(GeneratorScores(
            name=name, k=k, users=len(test),
            recall=float(np.mean(recalls)) if recalls else 0.0,
            ndcg=float(np.mean(ndcgs)) if ndcgs else 0.0,
            coverage=len(proposed) / active,
            novelty=float(np.mean(novelties)) if novelties else math.nan,
            fit_seconds=fit_seconds,
        ))
    return results


def format_table(results: Sequence[GeneratorScores]) -> str:
    """A plain-text table, one row per generator, with each metric's ratio to the baseline's."""
    base = next((r for r in results if r.name == BASELINE), None)
    k = results[0].k if results else 0
    lines = [f"{'generator':<18} {'recall@' + str(k):>10} {'ndcg@' + str(k):>10} {'vs base':>8} {'coverage':>9} {'novelty':>8} {'fit s':>7}"]
    for r in results:
        ratio = f"{r.ndcg / base.ndcg:.2f}x" if base and base.ndcg > 0 else "-"
        lines.append(f"{r.name:<18} {r.recall:>10.4f} {r.ndcg:>10.4f} {ratio:>8} {r.coverage:>9.4f} {r.novelty:>8.2f} {r.fit_seconds:>7.2f}")
    if results:
        lines.append(f"({results[0].users} test users; recall/NDCG/coverage in 0..1, novelty in bits)")
    return "\n".join(lines)


def as_json(results: Sequence[GeneratorScores]) -> list[dict[str, float | int | str]]:
    return [asdict(r) for r in results]
