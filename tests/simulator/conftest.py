"""A small, fast simulated world shared by the simulator tests."""

from __future__ import annotations

import pytest

from simulator.config import SimConfig, load_config


@pytest.fixture(scope="session")
def small_config() -> SimConfig:
    return load_config().with_overrides(
        seed=3,
        items={"source": "synthetic", "count": 300, "new_per_1000": 50.0},
        users={"source": "synthetic", "count": 40, "segments": 4},
        run={"actions": 10, "learn_every": 5, "policies": ["uniform", "popularity", "default", "linucb", "oracle"],
             "linucb_batch": 10},
    )
