import pickle
from dataclasses import replace

import numpy as np
from hypothesis import given, settings, strategies as st

from personalize.vectors import VectorConfig, VectorIndex, unit_rows

DIMENSION = 6
ITEMS = 400


def catalog(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    vectors = unit_rows(rng.standard_normal((ITEMS, DIMENSION)))
    usable = rng.random(ITEMS) > 0.1  # inactive items, or items without a vector
    return vectors, usable


ANN = VectorIndex(*catalog(), replace(VectorConfig(), ann_min_items=1))
EXACT = VectorIndex(*catalog(), VectorConfig())


def test_the_index_is_used_from_the_threshold_on() -> None:
    vectors, usable = catalog()
    assert VectorIndex(vectors, usable, replace(VectorConfig(), ann_min_items=int(usable.sum()))).ann is not None
    assert VectorIndex(vectors, usable, replace(VectorConfig(), ann_min_items=int(usable.sum()) + 1)).ann is None


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, ITEMS + 5), excluded=st.sets(st.integers(0, ITEMS - 1), max_size=ITEMS),
       query_seed=st.integers(0, 10_000))
def test_exclusions_are_never_returned_and_n_is_met_when_possible(n: int, excluded: set[int], query_seed: int) -> None:
    query = unit_rows(np.random.default_rng(query_seed).standard_normal((1, DIMENSION)))[0]
    excluded_positions = np.array(sorted(excluded), dtype=np.int64)
    available = int((ANN.usable & ~np.isin(np.arange(ITEMS), excluded_positions)).sum())
    for index in (ANN, EXACT):
        positions, scores = index.search(query, n, excluded_positions)
        assert len(positions) == min(n, available)
        assert not set(positions.tolist()) & excluded
        assert ANN.usable[positions].all()
        assert len(set(positions.tolist())) == len(positions)
        assert np.all(np.diff(scores) <= 1e-6), "best first"


def test_index_finds_the_exact_neighbours_on_a_small_catalog() -> None:
    rng = np.random.default_rng(1)
    none = np.zeros(0, dtype=np.int64)
    recall = []
    for _ in range(50):
        query = unit_rows(rng.standard_normal((1, DIMENSION)))[0]
        exact = set(EXACT.search(query, 10, none)[0].tolist())
        recall.append(len(exact & set(ANN.search(query, 10, none)[0].tolist())) / 10)
    assert np.mean(recall) >= 0.95


def test_an_index_survives_pickling() -> None:
    """usearch's Index does not pickle; VectorIndex stores its serialized bytes (generator models are pickles)."""
    copy = pickle.loads(pickle.dumps(ANN))
    query = ANN.vectors[5]
    excluded = np.array([5, 9], dtype=np.int64)
    first, second = ANN.search(query, 20, excluded), copy.search(query, 20, excluded)
    assert np.array_equal(first[0], second[0]) and np.allclose(first[1], second[1])


def test_unit_rows_keeps_zero_rows() -> None:
    rows = unit_rows(np.array([[3.0, 4.0], [0.0, 0.0]]))
    assert np.allclose(rows, [[0.6, 0.8], [0.0, 0.0]]) and rows.dtype == np.float32


def test_concurrent_searches_give_the_sequential_answers() -> None:
    """Rank calls run in several threads against one index (usearch's search with threads=1 from each)."""
    import threading

    rng = np.random.default_rng(2)
    queries = unit_rows(rng.standard_normal((160, DIMENSION)))
    none = np.zeros(0, dtype=np.int64)
    expected = [ANN.search(q, 30, none)[0] for q in queries]
    wrong: list[int] = []

    def work(start: int) -> None:
        for _ in range(3):
            for i in range(start, len(queries), 8):
                if not np.array_equal(ANN.search(queries[i], 30, none)[0], expected[i]):
                    wrong.append(i)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []
