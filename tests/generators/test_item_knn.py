from personalize.generator import CandidateRequest
from personalize.testing import GENRES, GeneratorContract, synthetic_data
from plugins.item_knn import ItemKnnGenerator


class TestItemKnn(GeneratorContract):
    def make_generator(self) -> ItemKnnGenerator:
        return ItemKnnGenerator()


def test_current_item_gives_co_occurring_items_even_for_new_users() -> None:
    data = synthetic_data()
    generator = ItemKnnGenerator()
    generator.fit(data)
    same_genre = proposed = 0
    for i in range(59):
        result = generator.candidates(CandidateRequest("new-user", current_item=f"i{i}"), 5)
        assert f"i{i}" not in {c.item_id for c in result}
        same_genre += sum(data.item_features[data.item_index[c.item_id]]["genres"][0] == GENRES[i % 3] for c in result)
        proposed += len(result)
    assert proposed > 0 and same_genre / proposed >= 0.7  # random would be 1/3
