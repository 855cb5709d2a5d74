import numpy as np
from hypothesis import given, settings, strategies as st

from simulator.choice import attraction, clicks
from simulator.items import build_catalog
from simulator.users import build_population, fit_movielens_preferences
from simulator.world import Traffic, World


def test_preferences_are_fitted_on_movielens() -> None:
    prefs = fit_movielens_preferences(20.0)
    assert prefs.shape == (610, 19)
    assert abs(prefs.std() - 1.0) < 1e-9


def test_traffic_is_reproducible(small_config) -> None:
    catalog = build_catalog(small_config.items, small_config.users, small_config.seed)
    a = Traffic(small_config, catalog, 40)
    b = Traffic(small_config, catalog, 40)
    for step in range(50):
        va, vb = a.visit(step), b.visit(step)
        assert va.slot == vb.slot and np.array_equal(va.candidates, vb.candidates)
        assert np.all(catalog.arrival[va.candidates] <= step)
        assert len(set(va.candidates.tolist())) == small_config.run.actions


def test_context_shifts_preferences(small_config) -> None:
    catalog = build_catalog(small_config.items, small_config.users, small_config.seed)
    population = build_population(small_config.users, small_config.seed)
    world = World(small_config, catalog, population)
    visit = Traffic(small_config, catalog, len(population)).visit(0)
    morning = world.attractions(visit)
    visit.time = (visit.time + 1) % len(small_config.context.times)
    assert not np.allclose(morning, world.attractions(visit))


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-4, 4), min_size=1, max_size=6), st.sampled_from(["position", "cascade"]))
def test_top_slot_click_probability_is_its_attraction(utilities, model) -> None:
    rng = np.random.default_rng(0)
    a = attraction(np.array(utilities), 1.0)
    draws = np.array([clicks(model, a, rng.random(len(a)), 1.0)[0] for _ in range(4000)])
    assert abs(draws.mean() - a[0]) < 4 * np.sqrt(a[0] * (1 - a[0]) / 4000) + 1e-3


def test_cascade_clicks_at_most_once() -> None:
    a = np.full(5, 0.9)
    assert clicks("cascade", a, np.full(5, 0.5), 1.0).sum() == 1
    assert clicks("position", a, np.full(5, 0.1), 0.0).sum() == 5


def _profile_of(features: list[dict]) -> dict | None:
    return next((f["profile"] for f in features if "profile" in f), None)


def test_clients_send_the_arrival_profile_and_newcomers_have_none(small_config) -> None:
    from simulator.items import GENRES

    catalog = build_catalog(small_config.items, small_config.users, small_config.seed)
    population = build_population(small_config.users, small_config.seed)
    world = World(small_config, catalog, population)
    visit = Traffic(small_config, catalog, len(population)).visit(0)
    sent = _profile_of(world.context_features(visit))
    assert sent == {g: round(float(v), 2) for g, v in zip(GENRES, population.preferences[visit.slot])}
    world.generation[visit.slot] += 1  # the user left; a newcomer without past ratings takes the slot
    world._arrive(visit.slot, *population.newcomer(np.random.default_rng(2)))
    assert _profile_of(world.context_features(visit)) is None
    noisy = World(small_config.with_overrides(users={"profile_noise": 0.5}), catalog, population)
    assert _profile_of(noisy.context_features(visit)) != sent
    hidden = World(small_config.with_overrides(users={"profile": False}), catalog, population)
    assert _profile_of(hidden.context_features(visit)) is None


class _Recorder:
    """A transport that keeps the Rank bodies and answers in request order."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []

    def rank(self, body: dict) -> dict:
        self.bodies.append(body)
        return {"ranking": [{"id": a["id"], "probability": 1.0 / len(body["actions"])} for a in body["actions"]]}


def test_clients_can_send_unit_genres_and_mark_consumed_candidates(small_config) -> None:
    from simulator.items import GENRES
    from simulator.policies import CONSUMED_FEATURE, Service

    config = small_config.with_overrides(items={"genre_weights": "unit"}, users={"consumed_flag": True})
    catalog = build_catalog(config.items, config.users, config.seed)
    population = build_population(config.users, config.seed)
    world = World(config, catalog, population)
    visit = Traffic(config, catalog, len(population)).visit(0)
    for row in range(len(catalog)):
        sent = catalog.features[row][0]["genres"]
        assert set(sent) == {name for name, g in zip(GENRES, catalog.genres[row]) if g}
        assert all(v == round(1 / np.sqrt(len(sent)), 4) for v in sent.values())
    consumed = {int(visit.candidates[1]), int(visit.candidates[4])}
    world.consumed[visit.slot] = set(consumed)
    transport = _Recorder()
    Service("default", transport, catalog, "t", consumed_flag=True).rank(visit, world, world.attractions(visit))
    marked = {a["id"] for a in transport.bodies[0]["actions"] if CONSUMED_FEATURE in a["features"]}
    assert marked == {catalog.ids[i] for i in consumed}
    assert CONSUMED_FEATURE not in catalog.features[int(visit.candidates[1])]  # the catalog itself is untouched
    Service("default", transport, catalog, "t").rank(visit, world, world.attractions(visit))
    assert not any(CONSUMED_FEATURE in a["features"] for a in transport.bodies[1]["actions"])
