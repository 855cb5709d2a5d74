"""Event-seeded sampling: deterministic, exact probabilities, and distributed as the PMF says."""

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from personalize.sampling import mix_uniform, normalize, sample_index, uniform_for

pmfs = st.lists(st.floats(min_value=0.0, max_value=1.0, allow_nan=False), min_size=1, max_size=60)


@given(pmfs)
def test_normalized_probabilities_are_nonnegative_and_sum_to_one(pmf: list[float]) -> None:
    p = normalize(pmf)
    assert all(x >= 0 for x in p)
    assert abs(sum(p) - 1.0) < 1e-9


@given(pmfs, st.floats(min_value=0.0, max_value=1.0, exclude_max=True))
def test_sample_never_picks_a_zero_probability_action(pmf: list[float], u: float) -> None:
    p = normalize(pmf)
    assert p[sample_index(p, u)] > 0


@given(st.text(min_size=1, max_size=40))
def test_same_event_id_same_draw(event_id: str) -> None:
    assert uniform_for(event_id) == uniform_for(event_id)
    assert 0.0 <= uniform_for(event_id) < 1.0


@settings(max_examples=5, deadline=None)
@given(st.lists(st.floats(min_value=0.05, max_value=1.0), min_size=2, max_size=5))
def test_draws_follow_the_pmf(weights: list[float]) -> None:
    p = normalize(weights)
    n = 20_000
    counts = Counter(sample_index(p, uniform_for(f"event-{i}")) for i in range(n))
    for i, pi in enumerate(p):
        assert abs(counts[i] / n - pi) < 4 * (pi * (1 - pi) / n) ** 0.5 + 1e-3


@given(pmfs, st.floats(min_value=0.0, max_value=1.0))
def test_exploration_floor_keeps_every_action_reachable(pmf: list[float], share: float) -> None:
    p = mix_uniform(normalize(pmf), share)
    assert abs(sum(p) - 1.0) < 1e-9
    assert all(x >= share / len(p) - 1e-12 for x in p)
