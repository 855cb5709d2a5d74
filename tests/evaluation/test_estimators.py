"""Estimators on a one-context problem small enough to take exact expectations by enumeration."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from personalize.evaluation.estimators import SWITCH_TAU, UNBIASED, Logged, bootstrap_ci, estimate, switch_dr

probabilities = st.lists(st.floats(0.05, 1.0), min_size=2, max_size=5)


def _normalize(values: list[float]) -> np.ndarray:
    arr = np.array(values)
    return arr / arr.sum()


def _expected(name: str, mu: np.ndarray, pi: np.ndarray, p_click: np.ndarray, q: np.ndarray) -> float:
    """E[estimator] over one logged event: enumerate the logged action and the 0/1 reward."""
    total = 0.0
    for a in range(len(mu)):
        for r, pr in ((1.0, p_click[a]), (0.0, 1.0 - p_click[a])):
            one = Logged(np.array([r]), np.array([mu[a]]), np.array([pi[a]]), np.array([q[a]]),
                         np.array([pi @ q]))
            total += mu[a] * pr * estimate(one, (name,))[name]
    return total


@settings(max_examples=60, deadline=None)
@given(probabilities, st.data())
def test_ips_and_dr_are_unbiased_for_any_reward_model(mu_raw, data) -> None:
    n = len(mu_raw)
    mu = _normalize(mu_raw)
    pi = _normalize(data.draw(st.lists(st.floats(0.0, 1.0), min_size=n, max_size=n).filter(lambda v: sum(v) > 0)))
    p_click = np.array(data.draw(st.lists(st.floats(0.0, 1.0), min_size=n, max_size=n)))
    q = np.array(data.draw(st.lists(st.floats(0.0, 1.0), min_size=n, max_size=n)))
    truth = float(pi @ p_click)
    assert _expected("ips", mu, pi, p_click, q) == pytest.approx(truth, abs=1e-9)
    assert _expected("dr", mu, pi, p_click, q) == pytest.approx(truth, abs=1e-9)
    assert _expected("dm", mu, pi, p_click, p_click) == pytest.approx(truth, abs=1e-9)


@settings(max_examples=30, deadline=None)
@given(probabilities, st.integers(0, 2**31 - 1))
def test_self_normalized_estimators_converge(mu_raw, seed) -> None:
    rng = np.random.default_rng(seed)
    mu = _normalize(mu_raw)
    n = len(mu)
    pi = _normalize(list(rng.random(n) + 0.01))
    p_click = rng.random(n)
    q = np.clip(p_click + rng.normal(0, 0.2, n), 0, 1)
    events = 20_000
    a = rng.choice(n, size=events, p=mu)
    r = (rng.random(events) < p_click[a]).astype(float)
    logged = Logged(r, mu[a], pi[a], q[a], np.full(events, pi @ q))
    truth = float(pi @ p_click)
    values = estimate(logged)
    for name in UNBIASED:
        assert values[name] == pytest.approx(truth, abs=0.05), name
    # Switch-DR keeps the model's guess where the weight exceeds tau: its bias is exactly that guess's
    # error on those actions (Wang et al., 2017), which the test's noisy reward model makes visible.
    dropped = pi / mu > SWITCH_TAU
    expected_switch = truth + float(pi[dropped] @ (q[dropped] - p_click[dropped]))
    assert values["switch_dr"] == pytest.approx(expected_switch, abs=0.05)


def test_switch_dr_drops_large_weight_corrections() -> None:
    logged = Logged(np.array([1.0, 0.0]), np.array([0.01, 0.5]), np.array([1.0, 0.5]), np.array([0.2, 0.2]),
                    np.array([0.3, 0.3]))
    assert switch_dr(logged, tau=20.0) == pytest.approx(np.mean([0.3, 0.3 + 1.0 * (0.0 - 0.2)]))
    assert switch_dr(logged, tau=np.inf) == pytest.approx(estimate(logged, ("dr",))["dr"])


def test_bootstrap_interval_contains_the_estimate() -> None:
    rng = np.random.default_rng(1)
    r = (rng.random(500) < 0.3).astype(float)
    logged = Logged(r, np.full(500, 0.5), np.full(500, 0.5), np.full(500, 0.3), np.full(500, 0.3))
    low, high = bootstrap_ci(logged, ("ips",), reps=100)["ips"]
    assert low <= estimate(logged, ("ips",))["ips"] <= high


def test_logged_refuses_zero_probabilities() -> None:
    with pytest.raises(ValueError, match="positive"):
        Logged(np.ones(1), np.zeros(1), np.ones(1), np.ones(1), np.ones(1))
