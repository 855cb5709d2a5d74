"""A simulated log for the evaluation tests: the user's ``kind`` decides which action pays.

Context ``user.kind`` (a, b or c) and ``user.noise`` (pays nothing); actions a, b, c with
``item.k`` (their kind) and ``item.color`` (pays nothing). Reward 1 when the chosen action's kind
is the user's, else 0. A policy that crosses context and action features (``-q ca``) can learn it;
one without interactions cannot: it is known to be worse.
"""

from __future__ import annotations

import random
from typing import Any, Callable

GOOD = "--cb_explore_adf --epsilon 0.05 -q ca"
BAD = "--cb_explore_adf --epsilon 0.05"
KINDS = ("a", "b", "c")


def rank_body(rng: random.Random) -> tuple[dict[str, Any], str]:
    kind = rng.choice(KINDS)
    body = {
        "contextFeatures": [{"user": {"kind": kind, "noise": rng.choice("pqrs")}}],
        "actions": [{"id": x, "features": [{"item": {"k": x, "color": rng.choice(["red", "blue"])}}]} for x in KINDS],
    }
    return body, kind


def simulate(rank: Callable[[dict[str, Any]], dict[str, Any]], reward: Callable[[str, float], None], n: int,
             seed: int = 0, tick: Callable[[], None] = lambda: None) -> None:
    rng = random.Random(seed)
    for _ in range(n):
        body, kind = rank_body(rng)
        answer = rank(body)
        reward(answer["eventId"], 1.0 if answer["rewardActionId"] == kind else 0.0)
        tick()
