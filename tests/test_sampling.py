"""Event-seeded sampling: deterministic, exact probabilities, and distributed as the PMF says."""

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from personalize.sampling import mix_uniform, normalize, sample_index, squarecb_scale, uniform_for

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


@given(pmfs, st.floats(min_value=1.0, max_value=100.0))
def test_squarecb_scaling_keeps_a_pmf_and_the_greedy_action(pmf: list[float], scale: float) -> None:
    p = normalize(pmf)
    q = squarecb_scale(p, scale)
    assert all(x >= 0 for x in q)
    assert abs(sum(q) - 1.0) < 1e-9
    greedy = max(range(len(p)), key=p.__getitem__)
    assert q[greedy] >= p[greedy] - 1e-9  # less exploration: the greedy action only gains


def test_squarecb_scaling_equals_vw_with_a_larger_gamma_scale() -> None:
    """The scaled PMF is exactly VW's SquareCB PMF with gamma_scale multiplied (same weights:
    SquareCB learns with MTR whatever gamma is, so both models learn the same)."""
    import json
    import random

    from personalize.vw import Model

    policy = ["--cb_explore_adf", "--squarecb", "--cb_type", "mtr", "-q", "ca", "-l", "2", "--quiet"]
    k, rng = 12, random.Random(0)
    plain, larger = Model(policy), Model(policy + ["--gamma_scale", "40"])  # VW's default gamma_scale is 10

    def line(segment: str, label: tuple[int, float] | None = None) -> str:
        c = {"c_u": {"seg": segment}, "_multi": [{"a_f": {"k": f"x{i}", "v": i * 0.1}} for i in range(k)]}
        if label is None:
            return json.dumps({"c": c})
        a, cost = label
        return json.dumps({"_label_cost": cost, "_label_probability": 1 / k, "_label_Action": a + 1, "_labelIndex": a,
                           "a": [a + 1], "c": c, "p": [1 / k]})

    for _ in range(300):
        segment, a = f"s{rng.randrange(3)}", rng.randrange(k)
        for model in (plain, larger):
            model.learn(line(segment, (a, -1.0 if a == int(segment[1]) * 2 else 0.0)))
    for segment in ("s0", "s1", "s2"):
        p = dict(plain.predict(line(segment)))
        q = dict(larger.predict(line(segment)))
        scaled = squarecb_scale(normalize([p[i] for i in range(k)]), 4.0)
        assert max(abs(x - y) for x, y in zip(scaled, normalize([q[i] for i in range(k)]))) < 1e-6
