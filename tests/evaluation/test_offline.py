"""Pure parts of personalize/evaluation/offline.py: learning settings as dimensions, and time series."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings, strategies as st

from personalize.evaluation.estimators import Logged, snips
from personalize.evaluation.offline import _buckets, candidate_policies, join_policy, split_policy, timeseries


def test_split_and_candidates() -> None:
    dims, rest = split_policy("--cb_explore_adf --squarecb --cb_type mtr -q ca -l 2 --power_t 0.5")
    assert dims == {"exploration": "--squarecb", "cb_type": "--cb_type mtr", "interactions": "-q ca", "learning_rate": "-l 2"}
    assert rest == "--power_t 0.5"
    assert candidate_policies("--cb_explore_adf --squarecb --cb_type mtr -q ca -l 2", "learning_rate") == [
        "--cb_explore_adf --squarecb --cb_type mtr -q ca -l 0.5", "--cb_explore_adf --squarecb --cb_type mtr -q ca -l 2",
        "--cb_explore_adf --squarecb --cb_type mtr -q ca -l 8"]
    assert "-q" not in candidate_policies("--cb_explore_adf -q ca -q cc", "interactions")[-1]


@given(st.sampled_from(["--squarecb", "--epsilon 0.1", "--squarecb --gamma_scale 100", ""]),
       st.sampled_from(["", "--cb_type dr"]), st.sampled_from(["", "-q ca", "-q ca -q cc"]),
       st.sampled_from(["", "-l 0.5"]), st.sampled_from(["", "--power_t 0", "--l1 1e-07"]))
def test_split_join_round_trips(exploration: str, cb_type: str, interactions: str, rate: str, rest: str) -> None:
    text = " ".join(p for p in ("--cb_explore_adf", exploration, cb_type, interactions, rate, rest) if p)
    assert join_policy(*split_policy(text)) == text


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 5 * 86_400), st.floats(0, 1), st.floats(0.05, 1),
                          st.one_of(st.just(0.0), st.floats(0.01, 1))),
                min_size=1, max_size=60))
def test_the_expanding_series_ends_at_the_whole_range_snips(rows: list[tuple[float, float, float, float]]) -> None:
    times = np.array([r[0] for r in rows]) + 1_700_000_000
    data = Logged(reward=np.array([r[1] for r in rows]), mu=np.array([r[2] for r in rows]),
                  pi=np.array([r[3] for r in rows]), q=np.zeros(len(rows)), dm=np.zeros(len(rows)))
    buckets = _buckets(times, data, 300)
    for interval in (5, 60, 1440):
        points, used = timeseries(buckets, 5, float(times.min()), float(times.max()) + 1, interval, "Expanding")
        if data.pi.sum() > 0:
            assert abs(points[-1]["expectedReward"] - snips(data)) < 1e-9
            low, high = points[-1]["confidenceInterval"]
            assert low <= points[-1]["expectedReward"] <= high
        assert used == interval
        assert [p["timeStamp"] for p in points] == sorted(p["timeStamp"] for p in points)
    rolling, _ = timeseries(buckets, 5, float(times.min()), float(times.max()) + 1, 60, "Rolling")
    assert len(rolling) <= len(points) + len(buckets)
