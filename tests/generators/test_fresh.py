from personalize.generator import CandidateRequest
from personalize.testing import GeneratorContract, synthetic_data
from plugins.fresh import FreshGenerator


class TestFresh(GeneratorContract):
    proposes_for_new_users = True

    def make_generator(self) -> FreshGenerator:
        return FreshGenerator()


def test_newest_first_including_items_nobody_touched() -> None:
    data = synthetic_data()
    generator = FreshGenerator()
    generator.fit(data)
    proposed = [c.item_id for c in generator.candidates(CandidateRequest("new-user"), 3)]
    assert proposed == ["i59", "i58", "i57"]  # i59 has no interactions at all
