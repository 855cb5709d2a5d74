from personalize.catalog import TrainingData
from personalize.generator import CandidateRequest
from personalize.testing import GeneratorContract
from plugins.popular import PopularConfig, PopularGenerator

DAY = 86_400.0


class TestPopular(GeneratorContract):
    proposes_for_new_users = True

    def make_generator(self) -> PopularGenerator:
        return PopularGenerator()


def _data() -> TrainingData:
    items = [("old-hit", {}, 0.0, True), ("new-hit", {}, 0.0, True)]
    rows = [(f"u{i}", "old-hit", 1.0, 0.0) for i in range(5)]  # five interactions a year before the end
    rows += [(f"v{i}", "new-hit", 1.0, 365 * DAY) for i in range(3)]  # three recent ones
    return TrainingData.build(items, rows)


def test_recent_interactions_count_more() -> None:
    generator = PopularGenerator(PopularConfig(half_life_days=30))
    generator.fit(_data())
    assert [c.item_id for c in generator.candidates(CandidateRequest("x"), 2)] == ["new-hit", "old-hit"]


def test_without_decay_it_is_plain_counts() -> None:
    generator = PopularGenerator(PopularConfig(half_life_days=None))
    generator.fit(_data())
    assert [(c.item_id, c.score) for c in generator.candidates(CandidateRequest("x"), 2)] == [("old-hit", 5.0), ("new-hit", 3.0)]
