"""A third-party plugin's tests: the contract from personalize.testing, plus its own behaviour."""

from personalize.catalog import TrainingData
from personalize.generator import CandidateRequest
from personalize.testing import GeneratorContract
from personalize_example import TopRatedConfig, TopRatedGenerator


class TestTopRated(GeneratorContract):
    proposes_for_new_users = True

    def make_generator(self) -> TopRatedGenerator:
        return TopRatedGenerator()


def test_damping_prefers_many_good_ratings_over_one_perfect_one() -> None:
    items = [("one-five", {}, 0.0, True), ("many-fours", {}, 0.0, True), ("many-twos", {}, 0.0, True)]
    rows = [("a", "one-five", 5.0, 0.0)] + [(f"u{i}", "many-fours", 4.0, 0.0) for i in range(20)]
    rows += [(f"v{i}", "many-twos", 2.0, 0.0) for i in range(20)]
    generator = TopRatedGenerator(TopRatedConfig(damping=5.0))
    generator.fit(TrainingData.build(items, rows))
    assert [c.item_id for c in generator.candidates(CandidateRequest("x"), 3)] == ["many-fours", "one-five", "many-twos"]
