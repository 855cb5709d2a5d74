"""svd: the shared contract, rating prediction, and which interactions count as ratings."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from personalize.catalog import TrainingData
from personalize.generator import CandidateRequest, RatingPredictor
from personalize.testing import GeneratorContract
from plugins.svd import SvdConfig, SvdGenerator


class TestSvd(GeneratorContract):
    def make_generator(self) -> SvdGenerator:
        return SvdGenerator(SvdConfig(factors=5))


def taste_ratings(users: int = 40, items: int = 30, seed: int = 0) -> tuple[TrainingData, np.ndarray]:
    """Ratings from two taste groups (even users love even items), with a few held-back pairs to predict."""
    rng = np.random.default_rng(seed)
    catalog = [(f"i{i}", {}, 0.0, True) for i in range(items)]
    truth = np.array([[5.0 if u % 2 == i % 2 else 1.0 for i in range(items)] for u in range(users)])
    rows = [(f"u{u}", f"i{i}", truth[u, i], float(k), "rating")
            for u in range(users) for k, i in enumerate(rng.choice(items, size=20, replace=False))]
    return TrainingData.build(catalog, rows), truth


def test_predicts_ratings_better_than_the_mean() -> None:
    data, truth = taste_ratings()
    generator = SvdGenerator(SvdConfig(factors=4, epochs=60))
    generator.fit(data)
    assert isinstance(generator, RatingPredictor)
    rated = {(data.user_ids[u], data.item_ids[i]) for u, i in zip(data.users, data.items)}
    unseen = [(f"u{u}", f"i{i}") for u in range(40) for i in range(30) if (f"u{u}", f"i{i}") not in rated]
    expected = np.array([truth[int(u[1:]), int(i[1:])] for u, i in unseen])
    predicted = generator.predict_ratings(unseen)
    rmse = float(np.sqrt(np.mean((predicted - expected) ** 2)))
    baseline = float(np.sqrt(np.mean((data.values.mean() - expected) ** 2)))
    assert rmse < 0.5 * baseline
    # the top proposals of an even user are even items, the rating they would give them is high
    proposed = generator.candidates(CandidateRequest("u0"), 5)
    assert proposed and all(int(c.item_id[1:]) % 2 == 0 for c in proposed)
    assert all(c.score > 4 for c in proposed)


def test_unknown_ids_fall_back_to_what_is_known() -> None:
    data, _ = taste_ratings()
    generator = SvdGenerator(SvdConfig(factors=4))
    generator.fit(data)
    mean = float(data.values.mean())
    both_unknown, user_unknown = generator.predict_ratings([("nobody", "nothing"), ("nobody", "i0")])
    assert both_unknown == np.clip(mean, 1, 5) and both_unknown == generator.mean
    assert user_unknown == np.clip(generator.mean + generator.item_bias[data.item_index["i0"]], 1, 5)
    assert ((generator.predict_ratings([("u0", f"i{i}") for i in range(30)]) >= 1)
            & (generator.predict_ratings([("u0", f"i{i}") for i in range(30)]) <= 5)).all()
    assert generator.predict_ratings([]).shape == (0,)


def test_only_ratings_count_and_the_latest_rating_of_a_pair_wins() -> None:
    catalog = [(f"i{i}", {}, 0.0, True) for i in range(3)]
    rows = [("a", "i0", 1.0, 10.0, "rating"), ("a", "i0", 5.0, 20.0, "rating"), ("a", "i1", 1.0, 5.0, "view"),
            ("b", "i1", 4.0, 1.0, "rating"), ("b", "i2", 2.0, 30.0, "purchase")]
    data = TrainingData.build(catalog, rows)
    assert data.is_rating.tolist() == [True, True, False, True, False]
    users, items, ratings = data.ratings()
    assert sorted(zip(users.tolist(), items.tolist(), ratings.tolist())) == [(0, 0, 5.0), (1, 1, 4.0)]
    generator = SvdGenerator(SvdConfig(factors=2))
    generator.fit(data)
    assert generator.rated_items.tolist() == [True, True, False]  # i2 was bought, never rated: no prediction
    assert generator.rating_range == (4.0, 5.0)


def test_views_only_store_gives_nothing() -> None:
    catalog = [(f"i{i}", {}, 0.0, True) for i in range(3)]
    generator = SvdGenerator()
    generator.fit(TrainingData.build(catalog, [("a", "i0", 1.0, 1.0, "view"), ("b", "i1", 1.0, 1.0, "view")]))
    assert generator.candidates(CandidateRequest("a"), 5) == []
    assert generator.predict_ratings([("a", "i1")]).tolist() == [0.0]


def test_serving_a_stored_model_does_not_import_surprise(tmp_path) -> None:
    """What is stored is NumPy arrays: a process that loads and serves the model never imports surprise."""
    generator = SvdGenerator(SvdConfig(factors=4))
    generator.fit(taste_ratings()[0])
    (tmp_path / "model").write_bytes(generator.save())
    script = ("import sys; from personalize.plugins import generator_classes; from personalize.generator import CandidateRequest;"
              f"g = generator_classes()['svd'].load(open({str(tmp_path / 'model')!r}, 'rb').read());"
              "assert g.candidates(CandidateRequest('u0'), 3) and g.predict_ratings([('u0', 'i1')]).size == 1;"
              "print(sorted(m for m in sys.modules if m.split('.')[0] in ('surprise', 'gensim')))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("top", [10.0, 100.0, 1e6])
def test_wide_rating_scales_are_learned_not_diverged(top: float) -> None:
    """0..100 scores or amounts as ratings: fitted scaled down (SGD diverged to NaN at 0..1000), predicted in their own scale."""
    data, truth = taste_ratings()
    scaled = TrainingData.build([(i, {}, 0.0, True) for i in data.item_ids], [
        (data.user_ids[u], data.item_ids[i], (v - 1) / 4 * top, float(t), "rating")
        for u, i, v, t in zip(data.users, data.items, data.values, data.timestamps)])
    generator = SvdGenerator(SvdConfig(factors=4, epochs=60))
    generator.fit(scaled)
    assert np.isfinite(generator.user_factors).all() and np.isfinite(generator.item_factors).all()
    proposed = generator.candidates(CandidateRequest("u0"), 5)
    assert proposed and all(int(c.item_id[1:]) % 2 == 0 for c in proposed)
    predicted = generator.predict_ratings([("u0", "i2"), ("u0", "i3")])
    assert 0 <= predicted[1] < 0.3 * top < 0.7 * top < predicted[0] <= top
