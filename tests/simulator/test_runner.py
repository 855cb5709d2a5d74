import json
from pathlib import Path

import numpy as np

from simulator.runner import run, write_outputs


def test_seeded_runs_are_reproducible_bit_for_bit(small_config, tmp_path: Path) -> None:
    first = run(small_config, 80, tmp_path / "a")
    second = run(small_config, 80, tmp_path / "b")
    assert json.dumps(first.summaries) == json.dumps(second.summaries)
    assert json.dumps(first.curves) == json.dumps(second.curves)


def test_oracle_has_zero_regret_and_bounds_everyone(small_config, tmp_path: Path) -> None:
    result = run(small_config, 80, tmp_path)
    assert result.summaries["oracle"]["cumulative_regret"] == 0.0
    for name, summary in result.summaries.items():
        assert summary["cumulative_regret"] >= 0.0, name
        assert 0.0 <= summary["value"] <= 1.0


def test_outputs_are_written(small_config, tmp_path: Path) -> None:
    result = run(small_config, 60, tmp_path / "services")
    written = write_outputs(result, tmp_path / "out")
    names = {p.name for p in written}
    assert {"metrics.json", "curves.csv", "learning_curve.png", "regret.png", "beyond_accuracy.png"} <= names
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert set(metrics["policies"]) == set(small_config.run.policies)
    rows = (tmp_path / "out" / "curves.csv").read_text().splitlines()
    assert rows[0].startswith("policy,events,ctr")
    assert np.isfinite(metrics["policies"]["default"]["ctr"])
