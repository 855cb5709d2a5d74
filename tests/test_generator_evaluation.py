"""Offline evaluation of generators: the temporal split and the metrics, on a small synthetic store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from personalize.catalog import TrainingData
from personalize.cli import cli
from personalize.generator import CandidateRequest, ScoredItem
from personalize.generator_evaluation import BASELINE, evaluate, evaluate_generators, format_table, temporal_split
from personalize.testing import synthetic_data
from plugins.popular import PopularGenerator


def test_temporal_split_holds_out_each_users_latest_interactions() -> None:
    items = [(f"i{i}", {}, 0.0, True) for i in range(6)]
    rows = [("a", f"i{i}", 1.0, float(i)) for i in range(5)] + [("b", "i0", 1.0, 0.0), ("c", "i1", 1.0, 0.0), ("c", "i2", 1.0, 9.0)]
    train, test = temporal_split(TrainingData.build(items, rows), holdout=0.4)
    a, b, c = (train.user_index[u] for u in "abc")
    assert test == {a: {3, 4}, c: {2}}  # b has one interaction: kept whole for training
    assert sorted(train.items[train.users == a].tolist()) == [0, 1, 2]
    assert train.items[train.users == b].tolist() == [0]


def test_metrics_are_in_range_and_collaborative_filtering_beats_fresh() -> None:
    results = {r.name: r for r in evaluate_generators(synthetic_data(), ["item_knn", "fresh"], k=5, holdout=0.3)}
    assert set(results) == {BASELINE, "item_knn", "fresh"}
    for r in results.values():
        assert 0 <= r.recall <= 1 and 0 <= r.ndcg <= 1 and 0 < r.coverage <= 1 and r.novelty > 0 and r.users == 30
        assert 0 <= r.precision <= 1 and r.rmse is None
    assert results["item_knn"].ndcg > results["fresh"].ndcg
    assert "item_knn" in format_table(list(results.values()))


def test_evaluate_generators_command(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    data = synthetic_data()
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps({"id": i, **f}) + "\n" for i, f in zip(data.item_ids, data.item_features)))
    rows = tmp_path / "rows.csv"
    rows.write_text("userId,itemId,value,timestamp\n" + "".join(
        f"{data.user_ids[u]},{data.item_ids[i]},{v},{t}\n" for u, i, v, t in zip(data.users, data.items, data.values, data.timestamps)))
    runner = CliRunner()
    assert runner.invoke(cli, ["import", "items", str(items), "--database-url", url]).exit_code == 0
    assert runner.invoke(cli, ["import", "interactions", str(rows), "--database-url", url]).exit_code == 0
    out = tmp_path / "results.json"
    result = runner.invoke(cli, ["evaluate-generators", "--generator", "popular", "-k", "5", "--json", str(out), "--database-url", url])
    assert result.exit_code == 0, result.output
    assert "recall@5" in result.output and "baseline:popular" in result.output
    assert [r["name"] for r in json.loads(out.read_text())] == [BASELINE, "popular"]
    assert np.isfinite([r["ndcg"] for r in json.loads(out.read_text())]).all()
    bad = runner.invoke(cli, ["evaluate-generators", "--generator", "nope", "--database-url", url])
    assert bad.exit_code == 2 and "unknown generator 'nope'" in bad.output


class MeanRater(PopularGenerator):
    """A third-party rating predictor: nothing registered, just a ``predict_ratings`` method."""

    name = "mean_rater"

    def __init__(self, guess: float) -> None:
        super().__init__()
        self.guess = guess

    def predict_ratings(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        return np.full(len(pairs), self.guess)


def test_precision_and_rmse_by_hand() -> None:
    """Held out (holdout 0.5): a's two latest (i2 rated 4, i3 rated 2), b's latest (i4 rated 5); c keeps its one."""
    items = [(f"i{i}", {}, 0.0, True) for i in range(5)]
    rows = [("a", "i0", 3.0, 1.0), ("a", "i1", 3.0, 2.0), ("a", "i2", 4.0, 3.0), ("a", "i3", 2.0, 4.0),
            ("b", "i2", 5.0, 1.0), ("b", "i4", 5.0, 1.5), ("c", "i2", 5.0, 1.0)]
    data = TrainingData.build(items, rows)
    scores = {r.name: r for r in evaluate(data, [("rater", MeanRater(3.0)), ("wrong", MeanRater(5.0))], k=2, holdout=0.5)}
    # popular proposes i2 (rated by b and c in training) to a: 1 hit of 2 proposals, 1 of 2 held-out items;
    # to b it proposes a's training items i0, i1: no hit
    rater = scores["rater"]
    assert rater.users == 2 and rater.precision == 0.25 and rater.recall == 0.25
    # predicting 3 everywhere: errors 1, 1, 2
    assert rater.rmse == np.sqrt(((4 - 3) ** 2 + (2 - 3) ** 2 + (5 - 3) ** 2) / 3)
    assert scores["wrong"].rmse == np.sqrt((1 + 9 + 0) / 3)  # predicting 5


def test_svd_gets_rmse_in_the_command_table() -> None:
    results = {r.name: r for r in evaluate_generators(synthetic_data(), ["svd", "item2vec"], k=5, holdout=0.3)}
    assert results["svd"].rmse is not None and 0 < results["svd"].rmse < 4
    assert results["item2vec"].rmse is None and results[BASELINE].rmse is None
    table = format_table(list(results.values()))
    assert "precision@5" in table and "rmse" in table


class BrokenRater(MeanRater):
    name = "broken_rater"

    def predict_ratings(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        return np.full(len(pairs), np.nan)


def test_a_rating_predictor_must_predict_finite_ratings() -> None:
    with pytest.raises(ValueError, match="BrokenRater.predict_ratings must return one finite rating per pair"):
        evaluate(synthetic_data(), [("broken", BrokenRater(0.0))], k=5)


def test_movielens_command_lists_svd_with_rmse_and_item2vec(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    result = CliRunner().invoke(cli, ["evaluate-generators", "--movielens", "--generator", "svd", "--generator", "item2vec",
                                      "--json", str(out)])
    assert result.exit_code == 0, result.output
    header = result.stdout.splitlines()[0].split()
    assert header[:4] == ["generator", "precision@10", "recall@10", "ndcg@10"] and "rmse" in header
    table = {r["name"]: r for r in json.loads(out.read_text())}
    assert set(table) == {BASELINE, "svd", "item2vec"} and table["svd"]["users"] == 610
    assert 0.8 < table["svd"]["rmse"] < 1.0  # 0.886 on this split (docs/generators.md)
    assert table["item2vec"]["rmse"] is None and table["item2vec"]["ndcg"] > table[BASELINE]["ndcg"]
    assert all(0 < r["precision"] < 1 for r in table.values())
