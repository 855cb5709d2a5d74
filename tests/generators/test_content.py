from personalize.catalog import item_tokens
from personalize.generator import CandidateRequest
from personalize.testing import GENRES, GeneratorContract, synthetic_data
from plugins.content import ContentGenerator


class TestContent(GeneratorContract):
    def make_generator(self) -> ContentGenerator:
        return ContentGenerator()


def test_tokens_are_words_and_categories() -> None:
    assert item_tokens({"title": "Toy Story (1995)", "genres": ["Comedy"], "year": 1995, "kids": True}) == [
        "toy", "story", "1995", "genres=comedy", "kids"]


def test_proposes_items_nobody_interacted_with() -> None:
    data = synthetic_data()
    generator = ContentGenerator()
    generator.fit(data)
    cold = "i59"  # a horror item without interactions
    proposed = [c.item_id for c in generator.candidates(CandidateRequest("u2"), 25)]  # u2 likes horror
    assert cold in proposed


def test_current_item_gives_similar_items() -> None:
    data = synthetic_data()
    generator = ContentGenerator()
    generator.fit(data)
    proposed = generator.candidates(CandidateRequest(None, current_item="i1"), 5)
    assert {data.item_features[data.item_index[c.item_id]]["genres"][0] for c in proposed} == {GENRES[1]}


def test_a_catalog_of_numbers_only_fits_and_proposes_nothing() -> None:
    """Regression (schemathesis): items with numeric features only and one interaction made fit a 500
    (sklearn's normalize refuses a profile matrix without columns)."""
    from personalize.catalog import TrainingData

    data = TrainingData.build([("a", {"price": 3}, 0.0, True), ("b", {"price": 5}, 0.0, True)], [("u", "a", 1.0, 1.0)])
    generator = ContentGenerator()
    generator.fit(data)
    assert list(generator.candidates(CandidateRequest("u"), 5)) == []
