import numpy as np

from personalize.generator import CandidateRequest
from personalize.testing import GeneratorContract, synthetic_data
from plugins.serendipity import SerendipityGenerator


class TestSerendipity(GeneratorContract):
    def make_generator(self) -> SerendipityGenerator:
        return SerendipityGenerator()


def test_draws_depend_on_the_seed_only() -> None:
    generator = SerendipityGenerator()
    generator.fit(synthetic_data())
    draws = {tuple(c.item_id for c in generator.candidates(CandidateRequest("u0", seed=s), 3)) for s in range(20)}
    assert len(draws) > 1
    assert generator.candidates(CandidateRequest("u0", seed=4), 3) == generator.candidates(CandidateRequest("u0", seed=4), 3)


def test_drawn_items_are_less_like_the_history_than_the_pool() -> None:
    data = synthetic_data()
    generator = SerendipityGenerator()
    generator.fit(data)
    profile = generator.content.scores(CandidateRequest("u0"))
    assert profile is not None
    pool = generator.relevance.candidates(CandidateRequest("u0"), 15)
    drawn = generator.candidates(CandidateRequest("u0", seed=1), 3)

    def similarity(item: str) -> float:
        value = profile[data.item_index[item]]
        return float(value) if np.isfinite(value) else 0.0

    assert max(similarity(c.item_id) for c in drawn) <= np.median([similarity(c.item_id) for c in pool]) + 1e-12
