from personalize.generator import CandidateRequest
from personalize.testing import GENRES, GeneratorContract, synthetic_data
from plugins.als import AlsConfig, AlsGenerator


class TestAls(GeneratorContract):
    def make_generator(self) -> AlsGenerator:
        return AlsGenerator(AlsConfig(factors=3, iterations=20))


def test_learns_the_taste_groups() -> None:
    data = synthetic_data()
    generator = AlsGenerator(AlsConfig(factors=3, iterations=20))  # three taste groups
    generator.fit(data)
    hits = 0
    for user in range(30):
        proposed = generator.candidates(CandidateRequest(f"u{user}"), 5)
        hits += sum(data.item_features[data.item_index[c.item_id]]["genres"][0] == GENRES[user % 3] for c in proposed)
    assert hits / 150 >= 0.8
