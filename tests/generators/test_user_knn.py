from personalize.generator import CandidateRequest
from personalize.testing import GENRES, GeneratorContract, synthetic_data
from plugins.user_knn import UserKnnGenerator


class TestUserKnn(GeneratorContract):
    def make_generator(self) -> UserKnnGenerator:
        return UserKnnGenerator()


def test_proposes_what_the_taste_group_liked() -> None:
    data = synthetic_data()
    generator = UserKnnGenerator()
    generator.fit(data)
    proposed = generator.candidates(CandidateRequest("u4"), 5)  # group 1: dramas
    genres = [data.item_features[data.item_index[c.item_id]]["genres"][0] for c in proposed]
    assert genres.count(GENRES[1]) >= 4
