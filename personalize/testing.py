"""Contract tests every candidate generator must pass: subclass ``GeneratorContract`` in your tests.

    from personalize.testing import GeneratorContract

    class TestMyGenerator(GeneratorContract):
        def make_generator(self):
            return MyGenerator()

pytest collects the inherited tests. They fit on a small synthetic catalog
(:func:`synthetic_data`): three taste groups of users, items in three genres, a few inactive
items and one item nobody has interacted with. Class attributes say what a generator
promises beyond the basics (for example whether it has something for a brand-new user).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import pytest

from personalize.catalog import TrainingData
from personalize.generator import CandidateRequest, Generator, ScoredItem
from personalize.plugins import generator_classes

__all__ = ["GeneratorContract", "synthetic_data", "GENRES"]

GENRES = ("comedy", "drama", "horror")
DAY = 86_400.0


def synthetic_data(users: int = 30, items: int = 60, seed: int = 0, dimension: int = 0) -> TrainingData:
    """Users of taste group ``u % 3`` mostly interact with items of genre ``i % 3``.

    Items ``i3`` and ``i7`` are inactive; ``i{items-1}`` (the newest) has no interactions. With
    ``dimension``, every item also has an ``embedding``: its genre's direction plus noise.
    """
    rng = np.random.default_rng(seed)
    directions = np.random.default_rng(1000 + seed).standard_normal((len(GENRES), max(dimension, 1)))
    catalog = [
        (f"i{i}", {"title": f"{GENRES[i % 3]} story number {i}", "genres": [GENRES[i % 3]], "year": 1990 + i % 30},
         1_600_000_000.0 + i * DAY, i not in (3, 7),
         (directions[i % 3] + 0.3 * rng.standard_normal(dimension)).tolist() if dimension else None)
        for i in range(items)
    ]
    rows = []
    for u in range(users):
        liked = [i for i in range(items - 1) if i % 3 == u % 3]
        others = [i for i in range(items - 1) if i % 3 != u % 3]
        picks = list(rng.choice(liked, size=8, replace=False)) + list(rng.choice(others, size=2, replace=False))
        for k, i in enumerate(picks):
            rows.append((f"u{u}", f"i{i}", float(rng.integers(1, 6)), 1_700_000_000.0 + u * 1000 + k * 60))
    return TrainingData.build(catalog, rows)


class GeneratorContract:
    """Base class of generator tests. Implement ``make_generator``; adjust the promises below."""

    #: The generator proposes something for a user with history.
    proposes_for_known_users: ClassVar[bool] = True
    #: The generator proposes something for a user it has never seen (popular, fresh, hybrid).
    proposes_for_new_users: ClassVar[bool] = False
    #: Items the user already interacted with are never proposed.
    excludes_seen: ClassVar[bool] = True
    #: Dimension of the item vectors (``embedding``) of the test catalog; 0 = items have none.
    embedding_dimension: ClassVar[int] = 0

    def make_generator(self) -> Generator:
        raise NotImplementedError("return a new, unfitted generator")

    @pytest.fixture(scope="class")
    @classmethod
    def data(cls) -> TrainingData:
        return synthetic_data(dimension=cls.embedding_dimension)

    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls, data: TrainingData) -> Generator:
        """Fitted once per test class: the tests only read it."""
        generator = cls().make_generator()
        generator.fit(data)
        return generator

    def known_users(self, data: TrainingData) -> list[str]:
        return list(data.user_ids[:6])

    def _check(self, result: list[ScoredItem], data: TrainingData, n: int) -> None:
        assert isinstance(result, list)
        assert len(result) <= n
        assert all(isinstance(c, ScoredItem) for c in result)
        ids = [c.item_id for c in result]
        assert len(ids) == len(set(ids)), "an item is proposed twice"
        assert set(ids) <= set(data.item_ids), "an item outside the catalog is proposed"
        scores = [c.score for c in result]
        assert all(np.isfinite(scores)), "scores must be finite"
        assert scores == sorted(scores, reverse=True), "candidates must be best first"

    def test_is_registered_with_a_config_dataclass(self) -> None:
        generator = self.make_generator()
        assert generator_classes().get(generator.name) is type(generator), f"{generator.name!r} is not registered by a plugin"
        assert dataclasses.is_dataclass(generator.config)

    def test_candidates_for_known_users(self, fitted: Generator, data: TrainingData) -> None:
        for user in self.known_users(data):
            result = fitted.candidates(CandidateRequest(user), 10)
            self._check(result, data, 10)
            if self.proposes_for_known_users:
                assert result, f"nothing proposed for {user}"

    @pytest.mark.parametrize("n", [0, 1, 3, 500])
    def test_n_is_respected(self, fitted: Generator, data: TrainingData, n: int) -> None:
        result = fitted.candidates(CandidateRequest(data.user_ids[0]), n)
        self._check(result, data, n)
        if n and self.proposes_for_known_users:
            assert result

    def test_inactive_items_are_never_proposed(self, fitted: Generator, data: TrainingData) -> None:
        inactive = {item for item, active in zip(data.item_ids, data.item_active) if not active}
        for user in [*self.known_users(data), "a-new-user"]:
            assert not inactive & {c.item_id for c in fitted.candidates(CandidateRequest(user), 100)}

    def test_excluded_items_are_never_proposed(self, fitted: Generator, data: TrainingData) -> None:
        user = data.user_ids[0]
        first = [c.item_id for c in fitted.candidates(CandidateRequest(user), 5)]
        again = fitted.candidates(CandidateRequest(user, exclude=frozenset(first)), 100)
        assert not set(first) & {c.item_id for c in again}

    @pytest.mark.parametrize("same_order", [True, False], ids=["same catalog order", "another catalog order"])
    def test_only_allowed_items_are_proposed_and_n_is_still_met(self, fitted: Generator, data: TrainingData,
                                                               same_order: bool) -> None:
        """A metadata filter (``request.allowed``) is applied while choosing, not after: the generator still
        proposes ``n`` items when it has that many allowed ones to say."""
        from personalize.filters import CatalogColumns, parse_filter

        order = list(range(len(data.item_ids))) if same_order else list(reversed(range(len(data.item_ids))))
        columns = CatalogColumns([data.item_ids[i] for i in order], [data.item_features[i] for i in order])
        item_filter = parse_filter({"genres": {"$in": ["comedy", "horror"]}, "year": {"$gte": 1995}})
        assert item_filter is not None
        allowed = item_filter.allowed(columns)
        for user in [*self.known_users(data)[:3], "a-new-user"]:
            everything = [c.item_id for c in fitted.candidates(CandidateRequest(user, seed=2), 500)]
            for n in (1, 5):
                result = fitted.candidates(CandidateRequest(user, seed=2, allowed=allowed), n)
                self._check(result, data, n)
                assert all(c.item_id in allowed for c in result), "an item outside request.allowed is proposed"
                assert len(result) >= min(n, sum(item in allowed for item in everything)), "filtered after the cut"

    def test_session_items_are_never_proposed(self, fitted: Generator, data: TrainingData) -> None:
        session = tuple(data.item_ids[i] for i in (0, 1, 4))
        for user in (None, data.user_ids[0]):
            result = fitted.candidates(CandidateRequest(user, session_items=session), 100)
            self._check(result, data, 100)
            assert not set(session) & {c.item_id for c in result}

    def test_seen_items_are_not_proposed(self, fitted: Generator, data: TrainingData) -> None:
        if not self.excludes_seen:
            pytest.skip("this generator re-proposes items")
        for user in self.known_users(data):
            seen = {data.item_ids[i] for i, u in zip(data.items, data.users) if data.user_ids[u] == user}
            assert not seen & {c.item_id for c in fitted.candidates(CandidateRequest(user), 100)}

    def test_unknown_user(self, fitted: Generator, data: TrainingData) -> None:
        result = fitted.candidates(CandidateRequest("a-new-user"), 10)
        self._check(result, data, 10)
        if self.proposes_for_new_users:
            assert result, "nothing proposed for a new user"

    def test_unknown_current_item_is_harmless(self, fitted: Generator, data: TrainingData) -> None:
        self._check(fitted.candidates(CandidateRequest(data.user_ids[0], current_item="no-such-item"), 10), data, 10)

    def test_same_request_same_answer(self, fitted: Generator, data: TrainingData) -> None:
        request = CandidateRequest(data.user_ids[1], seed=7)
        assert fitted.candidates(request, 10) == fitted.candidates(request, 10)

    def test_save_load_round_trip(self, fitted: Generator, data: TrainingData) -> None:
        loaded = type(fitted).load(fitted.save())
        assert type(loaded) is type(fitted)
        for user in [*self.known_users(data), "a-new-user"]:
            request = CandidateRequest(user, seed=3)
            assert loaded.candidates(request, 10) == fitted.candidates(request, 10)

    def test_fit_on_empty_store(self) -> None:
        generator = self.make_generator()
        generator.fit(TrainingData.build([], []))
        assert generator.candidates(CandidateRequest("anyone"), 10) == []

    def test_fit_on_catalog_without_interactions(self) -> None:
        data = synthetic_data(dimension=self.embedding_dimension)
        generator = self.make_generator()
        generator.fit(data.with_interactions(np.zeros(len(data.values), dtype=bool)))
        self._check(generator.candidates(CandidateRequest("anyone"), 10), data, 10)

    def test_refit_replaces_what_was_learned(self, data: TrainingData) -> None:
        generator = self.make_generator()
        generator.fit(synthetic_data(seed=1, dimension=self.embedding_dimension))
        generator.fit(data)
        fresh = self.make_generator()
        fresh.fit(data)
        request = CandidateRequest(data.user_ids[2], seed=5)
        assert generator.candidates(request, 10) == fresh.candidates(request, 10)
