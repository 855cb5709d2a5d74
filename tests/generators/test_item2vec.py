"""item2vec: the shared contract, item-to-item neighbours, time order, and reproducible fits."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

from personalize.catalog import TrainingData
from personalize.generator import CandidateRequest
from personalize.testing import GENRES, GeneratorContract, synthetic_data
from plugins.item2vec import Item2VecConfig, Item2VecGenerator, user_sequences


#: For the tiny synthetic data: every item gets a vector, no occurrence is down-sampled.
SMALL = Item2VecConfig(dimensions=16, epochs=20, min_count=1, sample=0, recent=20)


class TestItem2Vec(GeneratorContract):
    def make_generator(self) -> Item2VecGenerator:
        return Item2VecGenerator(SMALL)


def test_current_item_gives_items_of_the_same_taste_even_for_new_users() -> None:
    data = synthetic_data()
    generator = Item2VecGenerator(Item2VecConfig(dimensions=16, epochs=50, min_count=1, sample=0, recent=20))
    generator.fit(data)
    same = proposed = 0
    for i in range(59):
        result = generator.candidates(CandidateRequest("new-user", current_item=f"i{i}"), 5)
        assert f"i{i}" not in {c.item_id for c in result}
        same += sum(data.item_features[data.item_index[c.item_id]]["genres"][0] == GENRES[i % 3] for c in result)
        proposed += len(result)
    assert proposed > 0 and same / proposed >= 0.7  # random would be 1/3


def test_users_get_items_of_their_taste() -> None:
    data = synthetic_data()
    generator = Item2VecGenerator(Item2VecConfig(dimensions=16, epochs=50, min_count=1, sample=0, recent=20))
    generator.fit(data)
    hits = sum(data.item_features[data.item_index[c.item_id]]["genres"][0] == GENRES[u % 3]
               for u in range(30) for c in generator.candidates(CandidateRequest(f"u{u}"), 5))
    assert hits / 150 >= 0.7


def test_sequences_are_in_time_order_and_skip_non_positive_values() -> None:
    catalog = [(f"i{i}", {}, 0.0, True) for i in range(4)]
    rows = [("a", "i2", 1.0, 30.0), ("b", "i0", 1.0, 5.0), ("a", "i0", 1.0, 10.0), ("a", "i3", -1.0, 20.0),
            ("a", "i1", 1.0, 10.0)]
    sequences = user_sequences(TrainingData.build(catalog, rows))
    assert [s.tolist() for s in sequences] == [[0, 1, 2], [0]]  # ties keep data order


def test_a_users_recent_items_make_their_taste() -> None:
    """Two clusters of items; a user whose latest items are in the second gets second-cluster items."""
    catalog = [(f"i{i}", {}, 0.0, True) for i in range(20)]
    rng = np.random.default_rng(1)
    rows = [(f"u{u}", f"i{i}", 1.0, float(k)) for u in range(60)
            for k, i in enumerate(rng.choice(range(10) if u % 2 else range(10, 20), size=6, replace=False))]
    rows += [("switcher", f"i{i}", 1.0, float(k)) for k, i in enumerate([0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14])]
    generator = Item2VecGenerator(Item2VecConfig(dimensions=8, epochs=30, min_count=1, sample=0))
    generator.fit(TrainingData.build(catalog, rows))
    proposed = [int(c.item_id[1:]) for c in generator.candidates(CandidateRequest("switcher"), 3)]
    assert proposed and all(i >= 15 for i in proposed)


def test_fit_is_reproducible_across_processes() -> None:
    """Same data and seed, different PYTHONHASHSEED: the same vectors (gensim runs one worker)."""
    script = ("from personalize.testing import synthetic_data; from plugins.item2vec import Item2VecGenerator;"
              "from plugins.item2vec import Item2VecConfig; g = Item2VecGenerator(Item2VecConfig(min_count=1, sample=0)); g.fit(synthetic_data()); import hashlib; print(hashlib.sha256(g.vectors.tobytes()).hexdigest())")
    digests = {subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONHASHSEED": seed},
                              capture_output=True, text=True, check=True).stdout for seed in ("1", "2")}
    assert len(digests) == 1


def test_serving_a_stored_model_does_not_import_gensim(tmp_path) -> None:
    generator = Item2VecGenerator(SMALL)
    generator.fit(synthetic_data())
    (tmp_path / "model").write_bytes(generator.save())
    script = ("import sys; from personalize.plugins import generator_classes; from personalize.generator import CandidateRequest;"
              f"g = generator_classes()['item2vec'].load(open({str(tmp_path / 'model')!r}, 'rb').read());"
              "assert g.candidates(CandidateRequest('u0'), 3) and g.candidates(CandidateRequest(current_item='i1'), 3);"
              "print(sorted(m for m in sys.modules if m.split('.')[0] in ('surprise', 'gensim')))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_taste_is_the_mean_of_the_latest_items_with_a_vector() -> None:
    generator = Item2VecGenerator(SMALL)
    generator.fit(synthetic_data())
    known = np.flatnonzero(generator.has_vector)[:30].tolist()
    expected = generator.vectors[known[-20:]].mean(axis=0)
    assert np.allclose(generator.taste(known), expected)
    assert not generator.taste([]).any() and generator.taste([]).shape == (16,)
    assert np.allclose(generator.user_vectors[0], generator.taste(user_sequences(synthetic_data())[0]))


def test_an_anonymous_session_gets_items_of_its_taste() -> None:
    data = synthetic_data()
    generator = Item2VecGenerator(Item2VecConfig(dimensions=16, epochs=50, min_count=1, sample=0, recent=20))
    generator.fit(data)
    same = proposed = 0
    for genre in range(3):
        session = tuple(f"i{i}" for i in range(genre, 30, 3))[-3:]  # three items of one genre, no user
        result = generator.candidates(CandidateRequest(session_items=session), 5)
        assert result and not set(session) & {c.item_id for c in result}
        same += sum(data.item_features[data.item_index[c.item_id]]["genres"][0] == GENRES[genre] for c in result)
        proposed += len(result)
    assert same / proposed >= 0.7
    # the session (what the visitor does now) wins over a known user's history
    user_genre = GENRES[0]  # u0's taste
    other = tuple(f"i{i}" for i in (1, 4, 10))
    result = generator.candidates(CandidateRequest("u0", session_items=other), 5)
    assert sum(data.item_features[data.item_index[c.item_id]]["genres"][0] != user_genre for c in result) >= 3
