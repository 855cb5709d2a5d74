"""Generator mode: Rank by userId, the service proposing candidates from the catalog the simulator loaded."""

import json
import sqlite3
from pathlib import Path

from simulator.runner import run


def test_serendipity_changes_what_the_generators_propose(small_config, tmp_path: Path) -> None:
    config = small_config.with_overrides(run={"mode": "generators", "policies": ["test", "oracle"]})
    results = {s: run(config.with_overrides(service={"serendipity": s}), 40, tmp_path / str(s)).summaries
               for s in (0.0, 1.0)}
    for summaries in results.values():
        assert 0.0 < summaries["test"]["value"] <= summaries["oracle"]["value"] <= 1.0
    assert results[0.0]["oracle"] == results[1.0]["oracle"]  # same world, whole catalog: the setting cannot matter
    assert results[0.0]["test"]["coverage"] != results[1.0]["test"]["coverage"]


def test_refits_bring_released_items_into_the_candidates(small_config, tmp_path: Path) -> None:
    base = small_config.with_overrides(run={"mode": "generators", "policies": ["test"]})
    never = run(base, 60, tmp_path / "never").summaries["test"]
    refit = run(base.with_overrides(run={"refit_every": 20}), 60, tmp_path / "refit").summaries["test"]
    assert refit["coverage"] != never["coverage"]  # refits change what the generators know, hence propose


def test_new_generators_serve_the_generator_mode(small_config, tmp_path: Path) -> None:
    """svd (the loaded past ratings) and item2vec (their time order) propose candidates the lane ranks;
    popular covers newcomers, whom neither knows. Their names are in the logged events' provenance."""
    base = small_config.with_overrides(run={"mode": "generators", "policies": ["test"]})
    for name in ("svd", "item2vec"):
        service = {"generators": f"{name},popular", "serendipity": 0.0}
        summary = run(base.with_overrides(service=service), 30, tmp_path / name).summaries["test"]
        assert 0.0 < summary["value"] <= 1.0 and summary["coverage"] > 0, name
        [database] = (tmp_path / name).rglob("*.db")
        with sqlite3.connect(database) as db:
            provenance = [json.loads(extra) for (extra,) in db.execute("SELECT extra FROM events WHERE extra IS NOT NULL")]
        assert sum(f'"name": "{name}"' in json.dumps(p) for p in provenance) >= 10, name
