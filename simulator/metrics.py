"""What a run measures, per event and per policy, and how it is summarized into curves.

- reward: the realized click on the top slot (what the service is rewarded with);
- value: ``sum_a p(a) * attraction(a)``, the exact expected reward of the policy's decision;
- regret: oracle value minus value, in the policy's own world;
- diversity: intra-list diversity, mean pairwise genre cosine distance within the slate;
- novelty: mean self-information ``-log2(share of MovieLens users who rated the item)`` of the slate;
- serendipity: per slate slot, clicked (relevant) and unexpected (genre cosine with the user's
  consumption history below a threshold; a user with no history finds everything unexpected);
- coverage: share of the catalog released so far that has been shown in some slate;
- bubble_shown / bubble_consumed: genre entropy (bits) of each user's recent shown / consumed items.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from simulator.items import Catalog
from simulator.world import Outcome, Visit

__all__ = ["Recorder", "SERIES", "entropy_bits", "mean_ci"]

#: Per-event series, in the order of the curves CSV.
SERIES: tuple[str, ...] = ("reward", "value", "oracle", "regret", "diversity", "novelty", "serendipity",
                           "coverage", "bubble_shown", "bubble_consumed", "departures")


def entropy_bits(counts: np.ndarray) -> float:
    """Shannon entropy of a genre count vector; NaN when it is empty."""
    total = counts.sum()
    if total <= 0:
        return math.nan
    p = counts[counts > 0] / total
    return float(-(p * np.log2(p)).sum())


def mean_ci(values: np.ndarray, z: float = 1.96) -> tuple[float, float, float]:
    """Mean and normal-approximation 95% interval of a sample (NaNs ignored)."""
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return math.nan, math.nan, math.nan
    mean = float(values.mean())
    half = z * float(values.std(ddof=1)) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return mean, mean - half, mean + half


@dataclass
class Recorder:
    """Per-event measurements of one policy."""

    catalog: Catalog
    events: int
    serendipity_threshold: float

    def __post_init__(self) -> None:
        self.data = {name: np.full(self.events, np.nan) for name in SERIES}
        self.shown = np.zeros(len(self.catalog), dtype=bool)
        self.shown_count = 0
        self.arrivals = np.sort(self.catalog.arrival)
        self.departed = 0

    def record(self, visit: Visit, profile: np.ndarray, probabilities: np.ndarray, attractions: np.ndarray,
               outcome: Outcome) -> None:
        """One event; ``profile`` is the user's consumption genre profile before the visit."""
        t, d, cat = visit.step, self.data, self.catalog
        value = float(probabilities @ attractions)
        best = float(attractions.max())
        d["reward"][t] = outcome.reward
        d["value"][t] = value
        d["oracle"][t] = best
        d["regret"][t] = best - value
        unit = cat.unit_genres[outcome.slate]
        n = len(unit)
        if n > 1:
            similarity = unit @ unit.T
            d["diversity"][t] = 1.0 - (similarity.sum() - np.trace(similarity)) / (n * (n - 1))
        d["novelty"][t] = float(cat.self_information[outcome.slate].mean())
        norm = np.linalg.norm(profile)
        unexpected = (unit @ (profile / norm) < self.serendipity_threshold) if norm > 0 else np.ones(n, dtype=bool)
        d["serendipity"][t] = float((outcome.clicked & unexpected).sum()) / n
        new = ~self.shown[outcome.slate]
        self.shown[outcome.slate] = True
        self.shown_count += int(new.sum())
        released = int(np.searchsorted(self.arrivals, visit.step, side="right"))
        d["coverage"][t] = self.shown_count / released
        d["bubble_shown"][t] = entropy_bits(outcome.recent_shown)
        d["bubble_consumed"][t] = entropy_bits(outcome.recent_consumed)
        self.departed += int(outcome.churned)
        d["departures"][t] = self.departed

    def curves(self, window: int) -> list[dict[str, float]]:
        """One row per window: means (with a 95% interval for reward), cumulative regret, level series at the end."""
        rows = []
        cumulative_regret = np.cumsum(self.data["regret"])
        for start in range(0, self.events, window):
            end = min(start + window, self.events)
            part = {name: values[start:end] for name, values in self.data.items()}
            ctr, low, high = mean_ci(part["reward"])
            row = {"events": float(end), "ctr": ctr, "ctr_low": low, "ctr_high": high}
            for name in ("value", "oracle", "diversity", "novelty", "serendipity", "bubble_shown", "bubble_consumed"):
                row[name] = float(np.nanmean(part[name])) if not np.isnan(part[name]).all() else math.nan
            row["cumulative_regret"] = float(cumulative_regret[end - 1])
            row["coverage"] = float(self.data["coverage"][end - 1])
            row["departures"] = float(self.data["departures"][end - 1])
            rows.append(row)
        return rows

    def summary(self, tail: float = 0.1) -> dict[str, float]:
        """Whole-run means, the last ``tail`` of the run (where learners have converged), and end levels."""
        d = self.data
        last = max(1, int(self.events * tail))
        ctr, low, high = mean_ci(d["reward"])
        tail_ctr, tail_low, tail_high = mean_ci(d["reward"][-last:])
        return {
            "ctr": ctr, "ctr_low": low, "ctr_high": high,
            "value": float(np.mean(d["value"])),
            "final_ctr": tail_ctr, "final_ctr_low": tail_low, "final_ctr_high": tail_high,
            "final_value": float(np.mean(d["value"][-last:])),
            "final_oracle": float(np.mean(d["oracle"][-last:])),
            "cumulative_regret": float(np.sum(d["regret"])),
            "diversity": float(np.nanmean(d["diversity"])) if not np.isnan(d["diversity"]).all() else math.nan,
            "novelty": float(np.mean(d["novelty"])),
            "serendipity": float(np.mean(d["serendipity"])),
            "coverage": float(d["coverage"][-1]),
            "bubble_shown": float(np.nanmean(d["bubble_shown"][-last:])),
            "bubble_consumed": float(np.nanmean(d["bubble_consumed"][-last:])) if not np.isnan(
                d["bubble_consumed"][-last:]).all() else math.nan,
            "departures": float(d["departures"][-1]),
        }
