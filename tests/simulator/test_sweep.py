from pathlib import Path

import pytest
from click.testing import CliRunner

from simulator.commands import simulate
from simulator.sweep import parse_grid


def test_parse_grid_is_the_cartesian_product() -> None:
    assert parse_grid(["exploration=0,0.1", "serendipity=0.3"]) == [
        {"exploration": 0, "serendipity": 0.3}, {"exploration": 0.1, "serendipity": 0.3}]
    with pytest.raises(ValueError, match="NAME=V1,V2"):
        parse_grid(["exploration"])


def test_sweep_command_ranks_a_tiny_grid(tmp_path: Path) -> None:
    config = tmp_path / "tiny.toml"
    config.write_text('[items]\nsource = "synthetic"\ncount = 200\n[users]\nsource = "synthetic"\ncount = 20\n'
                      '[run]\nactions = 5\nlearn_every = 5\n')
    out = tmp_path / "sweep"
    result = CliRunner().invoke(simulate, ["sweep", "--config", str(config), "--set", "exploration=0,0.5",
                                           "--events", "30", "--repeats", "2", "--jobs", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "recommended: exploration=" in result.output
    assert (out / "sweep.csv").read_text().count("\n") == 3


def test_sweep_refuses_a_bad_setting(tmp_path: Path) -> None:
    result = CliRunner().invoke(simulate, ["sweep", "--set", "exploration=2", "--out", str(tmp_path)])
    assert result.exit_code != 0 and "exploration" in result.output
