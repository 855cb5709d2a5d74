from dataclasses import replace
from typing import Any

import numpy as np

from personalize.catalog import TrainingData
from personalize.generator import CandidateRequest
from personalize.testing import GENRES, GeneratorContract, synthetic_data
from personalize.vectors import VectorConfig
from plugins.embedding import EmbeddingGenerator


class TestEmbedding(GeneratorContract):
    embedding_dimension = 8

    def make_generator(self) -> EmbeddingGenerator:
        return EmbeddingGenerator()


class TestEmbeddingThroughTheIndex(GeneratorContract):
    """The same contract when every search goes through the HNSW index (the large-catalog path)."""

    embedding_dimension = 8

    def make_generator(self) -> EmbeddingGenerator:
        return EmbeddingGenerator(replace(VectorConfig(), ann_min_items=1))


def genre(data: TrainingData, item: str) -> str:
    return data.item_features[data.item_index[item]]["genres"][0]


def test_proposes_items_of_the_users_taste_and_items_nobody_touched() -> None:
    data = synthetic_data(dimension=8)
    generator = EmbeddingGenerator()
    generator.fit(data)
    proposed = [c.item_id for c in generator.candidates(CandidateRequest("u2"), 10)]  # u2 likes horror
    assert {genre(data, item) for item in proposed[:5]} == {GENRES[2]}
    assert "i59" in [c.item_id for c in generator.candidates(CandidateRequest("u2"), 20)]  # horror, no interactions


def test_current_item_gives_items_nearest_to_it() -> None:
    data = synthetic_data(dimension=8)
    generator = EmbeddingGenerator()
    generator.fit(data)
    proposed = generator.candidates(CandidateRequest(None, current_item="i1"), 5)
    assert len(proposed) == 5 and {genre(data, c.item_id) for c in proposed} == {GENRES[1]}
    assert "i1" not in {c.item_id for c in proposed}


def test_profile_weighs_recent_items_more() -> None:
    """A user who watched comedy long ago and horror lately gets horror first."""
    vectors = {"c1": [1.0, 0.0], "c2": [0.99, 0.1], "h1": [0.0, 1.0], "h2": [0.1, 0.99], "c3": [0.98, 0.05],
               "h3": [0.05, 0.98]}
    items = [(item, {}, 0.0, True, vector) for item, vector in vectors.items()]
    rows = [("u", "c1", 1.0, 1.0), ("u", "c2", 1.0, 2.0), ("u", "h1", 1.0, 3.0), ("u", "h2", 1.0, 4.0)]
    generator = EmbeddingGenerator(replace(VectorConfig(), half_life=1.0))
    generator.fit(TrainingData.build(items, rows))
    assert [c.item_id for c in generator.candidates(CandidateRequest("u"), 2)] == ["h3", "c3"]


def test_items_without_a_vector_are_never_proposed_and_no_vectors_propose_nothing() -> None:
    items = [("a", {}, 0.0, True, [1.0, 0.0]), ("b", {}, 0.0, True, None), ("c", {}, 0.0, True, [0.9, 0.1])]
    generator = EmbeddingGenerator()
    generator.fit(TrainingData.build(items, [("u", "a", 1.0, 1.0), ("u", "b", 1.0, 2.0)]))
    assert [c.item_id for c in generator.candidates(CandidateRequest("u"), 5)] == ["c"]
    generator.fit(TrainingData.build([(i, f, c, a) for i, f, c, a, _ in items], [("u", "a", 1.0, 1.0)]))
    assert generator.candidates(CandidateRequest("u"), 5) == []
    assert generator.candidates(CandidateRequest(None, current_item="a"), 5) == []


def test_a_vector_of_another_dimension_is_left_out() -> None:
    """Two uploads racing in an empty catalog could store two dimensions; fit keeps the common one."""
    items = [("a", {}, 0.0, True, [1.0, 0.0]), ("b", {}, 0.0, True, [1.0, 0.0, 0.0]), ("c", {}, 0.0, True, [0.9, 0.1])]
    data = TrainingData.build(items, [])
    assert data.item_vectors is not None and data.item_vectors.shape == (3, 2) and not data.item_vectors[1].any()
    generator = EmbeddingGenerator()
    generator.fit(data)
    assert [c.item_id for c in generator.candidates(CandidateRequest(None, current_item="a"), 5)] == ["c"]


def test_index_and_exact_search_agree_on_a_small_catalog() -> None:
    data = synthetic_data(dimension=8)
    exact, approximate = EmbeddingGenerator(), EmbeddingGenerator(replace(VectorConfig(), ann_min_items=1))
    exact.fit(data)
    approximate.fit(data)
    assert approximate.index.ann is not None and exact.index.ann is None
    for user in data.user_ids[:10]:
        a = [c.item_id for c in exact.candidates(CandidateRequest(user), 10)]
        b = [c.item_id for c in approximate.candidates(CandidateRequest(user), 10)]
        assert len(set(a) & set(b)) >= 9
    scores = [c.score for c in approximate.candidates(CandidateRequest(data.user_ids[0]), 10)]
    assert np.all(np.isfinite(scores))


def test_vectors_sent_to_the_catalog_api_drive_rank(client: Any) -> None:
    """The docs/embeddings.md example through the API on both backends: vectors in, nearest items out."""
    items = [{"id": "m1", "title": "Alien", "embedding": [0.9, 0.1, 0.0, 0.2]},
             {"id": "m2", "title": "Aliens", "embedding": [0.8, 0.2, 0.1, 0.2]},
             {"id": "m3", "title": "Amelie", "embedding": [0.0, 0.9, 0.4, 0.1]},
             {"id": "m4", "title": "Heat", "embedding": [0.1, 0.1, 0.9, 0.3]}]
    assert client.post("/personalizer/v1.0/catalog/items", json={"items": items}).status_code == 200
    assert client.post("/personalizer/v1.0/interactions",
                       json={"interactions": [{"userId": "42", "itemId": "m1"}]}).status_code == 201
    assert client.post("/personalizer/v1.0/generators/train", json={"generators": ["embedding"]}).status_code == 200
    ranked = client.post("/personalizer/v1.0/rank", json={"userId": "42", "generators": ["embedding"], "numCandidates": 2})
    assert ranked.status_code == 201, ranked.get_json()
    proposed = {entry["id"]: entry["generators"][0] for entry in ranked.get_json()["ranking"]}
    assert proposed["m2"]["rank"] == 1 and proposed["m4"]["rank"] == 2
    more = client.post("/personalizer/v1.0/rank", json={"userId": "42", "generators": ["embedding"], "numCandidates": 1,
                                                         "contextFeatures": [{"currentItemId": "m3"}]})
    assert [entry["id"] for entry in more.get_json()["ranking"]] == ["m4"]
