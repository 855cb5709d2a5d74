"""A grid of service settings, each run on the same worlds (seeds), ranked by an objective with intervals.

Every cell runs the 'test' policy (the service with the cell's settings) beside the oracle, once
per repeat; repeat ``r`` uses seed ``config.seed + r`` in every cell, so cells are compared on the
same users and visits. Cells run in parallel processes.
"""

from __future__ import annotations

import itertools
import json
import math
import multiprocessing
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy import stats
from tqdm import tqdm

from personalize.config import load_settings
from simulator.config import ItemsConfig, SimConfig, UsersConfig
from simulator.items import Catalog, build_catalog
from simulator.runner import run
from simulator.users import Population, build_population

__all__ = ["parse_grid", "Objective", "CellResult", "sweep", "format_table", "write_sweep"]

_METRICS = ("value", "ctr", "cumulative_regret", "diversity", "novelty", "serendipity", "coverage", "departures")


def _parse_value(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_grid(sets: Sequence[str]) -> list[dict[str, Any]]:
    """``["exploration=0,0.1", "serendipity=0,0.3"]`` -> the 4 combinations, first setting varying slowest."""
    axes = []
    for item in sets:
        name, sep, values = item.partition("=")
        if not sep or not name.strip() or not values.strip():
            raise ValueError(f"--set {item!r}: write NAME=V1,V2,... (for example exploration=0,0.05,0.1)")
        axes.append([(name.strip(), _parse_value(v.strip())) for v in values.split(",")])
    return [dict(combo) for combo in itertools.product(*axes)]


@dataclass(frozen=True)
class Objective:
    """What the sweep ranks by: expected reward per event, plus optional bonuses.

    ``score = value + diversity_weight * diversity + serendipity_weight * serendipity``; with
    both weights 0 it is the mean expected reward ('reward').
    """

    diversity_weight: float = 0.0
    serendipity_weight: float = 0.0

    def score(self, summary: dict[str, float]) -> float:
        return (summary["value"] + self.diversity_weight * summary["diversity"]
                + self.serendipity_weight * summary["serendipity"])

    def describe(self) -> str:
        if not self.diversity_weight and not self.serendipity_weight:
            return "mean expected reward per event"
        return (f"mean expected reward + {self.diversity_weight:g} x diversity "
                f"+ {self.serendipity_weight:g} x serendipity")


@dataclass
class CellResult:
    settings: dict[str, Any]
    scores: list[float]
    summaries: list[dict[str, float]]

    def mean_ci(self, values: Sequence[float]) -> tuple[float, float, float]:
        """Mean and t-based 95% interval across repeats (NaN interval with one repeat)."""
        arr = np.asarray(values, dtype=float)
        mean = float(arr.mean())
        if len(arr) < 2:
            return mean, math.nan, math.nan
        half = float(stats.t.ppf(0.975, len(arr) - 1) * arr.std(ddof=1) / math.sqrt(len(arr)))
        return mean, mean - half, mean + half

    @property
    def score(self) -> tuple[float, float, float]:
        return self.mean_ci(self.scores)

    def metric(self, name: str) -> float:
        return float(np.mean([s[name] for s in self.summaries]))

    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.settings.items())


@lru_cache(maxsize=4)
def _world(items: ItemsConfig, users: UsersConfig, seed: int) -> tuple[Catalog, Population]:
    """Each worker process builds a world once per seed."""
    return build_catalog(items, users, seed), build_population(users, seed)


def _one(args: tuple[SimConfig, dict[str, Any], int, int]) -> tuple[int, dict[str, float]]:
    base, settings, repeat, events = args
    config = base.with_overrides(seed=base.seed + repeat, service=settings, run={"policies": ["test", "oracle"]})
    catalog, population = _world(config.items, config.users, config.seed)
    with tempfile.TemporaryDirectory(prefix="personalize-sweep-") as folder:
        result = run(config, events, Path(folder), catalog=catalog, population=population)
    return repeat, result.summaries["test"]


def sweep(config: SimConfig, grid: Sequence[dict[str, Any]], events: int, repeats: int, jobs: int,
          objective: Objective, progress: bool = False) -> list[CellResult]:
    """Run every cell ``repeats`` times; cells sorted best first by the objective's mean."""
    for settings in grid:  # fail fast, before starting processes, on a setting the service refuses
        load_settings({**config.service, **settings}, env={})
    tasks = [(config, settings, repeat, events) for settings in grid for repeat in range(repeats)]
    # spawn, not fork: a forked child can inherit locks held by the parent's threads (BLAS, SQLAlchemy) and hang
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        done = list(tqdm(pool.map(_one, tasks), total=len(tasks), disable=not progress, unit="run", desc="sweep"))
    cells = []
    for i, settings in enumerate(grid):
        summaries = [summary for _, summary in done[i * repeats:(i + 1) * repeats]]
        cells.append(CellResult(settings, [objective.score(s) for s in summaries], summaries))
    return sorted(cells, key=lambda c: -c.score[0])


def format_table(cells: Sequence[CellResult], objective: Objective) -> str:
    width = max(len(c.label()) for c in cells)
    header = (f"{'#':>2}  {'setting':<{width}}  {'objective [95% CI]':<26}  {'value':>6}  {'regret':>7}  "
              f"{'divers':>6}  {'novel':>5}  {'seren':>6}  {'cover':>6}  {'left':>5}")
    lines = [f"objective: {objective.describe()}", header]
    for rank, cell in enumerate(cells, 1):
        mean, low, high = cell.score
        lines.append(
            f"{rank:>2}  {cell.label():<{width}}  {f'{mean:.4f} [{low:.4f}, {high:.4f}]':<26}  "
            f"{cell.metric('value'):6.4f}  {cell.metric('cumulative_regret'):7.1f}  {cell.metric('diversity'):6.3f}  "
            f"{cell.metric('novelty'):5.2f}  {cell.metric('serendipity'):6.4f}  {cell.metric('coverage'):6.3f}  "
            f"{cell.metric('departures'):5.0f}")
    best = cells[0]
    lines.append(f"recommended: {best.label()}")
    tied = [c.label() for c in cells[1:] if not math.isnan(best.score[1]) and c.score[2] >= best.score[1]]
    if tied:
        lines.append(f"  (its interval overlaps: {'; '.join(tied)} -- more --repeats or --events to separate them)")
    return "\n".join(lines)


def write_sweep(cells: Sequence[CellResult], objective: Objective, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    table = out / "sweep.txt"
    table.write_text(format_table(cells, objective) + "\n")
    data = out / "sweep.json"
    data.write_text(json.dumps({
        "objective": objective.describe(),
        "recommended": cells[0].settings,
        "cells": [{"settings": c.settings, "objective": dict(zip(("mean", "low", "high"), c.score)),
                   "scores": c.scores, "runs": c.summaries} for c in cells],
    }, indent=2) + "\n")
    csv = out / "sweep.csv"
    with open(csv, "w") as fh:
        keys = list(cells[0].settings)
        fh.write(",".join([*keys, "objective", "objective_low", "objective_high", *_METRICS]) + "\n")
        for c in cells:
            fh.write(",".join([*(str(c.settings[k]) for k in keys), *(f"{v:.6g}" for v in c.score),
                               *(f"{c.metric(m):.6g}" for m in _METRICS)]) + "\n")
    return [table, data, csv]
