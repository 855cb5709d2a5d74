from personalize.generator import CandidateRequest
from personalize.testing import GeneratorContract, synthetic_data
from plugins.hybrid import HybridConfig, HybridGenerator


class TestHybrid(GeneratorContract):
    proposes_for_new_users = True

    def make_generator(self) -> HybridGenerator:
        return HybridGenerator()


def test_each_result_names_its_components() -> None:
    generator = HybridGenerator()
    generator.fit(synthetic_data())
    proposed = generator.candidates(CandidateRequest("u0"), 10)
    assert all(c.sources for c in proposed)
    assert {s.name for c in proposed for s in c.sources} >= {"als", "item_knn"}


def test_cold_users_fall_back_to_popular_and_fresh() -> None:
    generator = HybridGenerator()
    generator.fit(synthetic_data())
    proposed = generator.candidates(CandidateRequest("new-user"), 10)
    assert {s.name for c in proposed for s in c.sources} == {"popular", "fresh"}


def test_weights_choose_the_components() -> None:
    generator = HybridGenerator(HybridConfig(weights={"content": 1.0}))
    generator.fit(synthetic_data())
    assert {s.name for c in generator.candidates(CandidateRequest("u0"), 10) for s in c.sources} == {"content"}
