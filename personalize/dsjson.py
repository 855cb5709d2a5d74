"""VW decision-service JSON (DSJSON) lines for logged events (single-slot: VW's CB format;
multi-slot: VW's CCB format, with ``_slots`` in ``c`` and one ``_outcomes`` entry per slot).

The learner trains on exactly these lines, so exporting them and training a fresh VW
reproduces the service's model.
"""

from __future__ import annotations

import math
import time
from functools import lru_cache
from typing import Any

import orjson

from personalize.models import Event

__all__ = ["event_line", "multislot_line"]


@lru_cache(maxsize=4096)
def _second(second: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS.`` of a whole UTC second (cached: the learner formats thousands per step)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second))


def _iso(ts: float) -> str:
    """UTC time with milliseconds, exactly as ``datetime.fromtimestamp(ts, timezone.utc)`` rounds
    (microseconds half-even, then truncated to milliseconds), at a fraction of strftime's cost."""
    second = math.floor(ts)
    micro = round((ts - second) * 1e6)
    if micro >= 1_000_000:
        second, micro = second + 1, micro - 1_000_000
    return f"{_second(second)}{micro // 1000:03d}Z"


def event_line(event: Event | Any, reward: float, model_id: str = "personalize") -> str:
    """One DSJSON line: cost is the negated reward (VW minimizes cost)."""
    head = {
        "_label_cost": -float(reward),
        "_label_probability": float(event.probability),
        "_label_Action": event.chosen_index + 1,
        "_labelIndex": event.chosen_index,
        "Timestamp": _iso(event.created_at),
        "Version": "1",
        "EventId": event.event_id,
        "a": [i + 1 for i in event.ranking],
        "p": [float(p) for p in event.probabilities],
        "VWState": {"m": f"{model_id}/{event.model_version}"},
    }
    text = orjson.dumps(head).decode()
    return text[:-1] + ',"c":' + event.example + "}"


def multislot_line(event: Event | Any, slot_rewards: list[float], model_id: str = "personalize-multislot") -> str:
    """One CCB DSJSON line: per answered slot, an outcome with its cost (the negated reward), the actions it
    ranked (``_a``, 0-based, the chosen first) and their probabilities (``_p``, the chosen's first).

    ``c`` comes before ``_outcomes``: VW's parser reads the outcomes against the actions it has seen.
    """
    answered = [slot for slot in event.slots if slot["ranking"]]
    outcomes = [{"_id": slot["id"], "_label_cost": -float(reward), "_a": slot["ranking"],
                 "_p": [float(p) for p in slot["probabilities"]]}
                for slot, reward in zip(answered, slot_rewards, strict=True)]
    head = orjson.dumps({"Timestamp": _iso(event.created_at), "Version": "1", "EventId": event.event_id}).decode()
    state = orjson.dumps({"m": f"{model_id}/{event.model_version}"}).decode()
    return (head[:-1] + ',"c":' + event.example + ',"_outcomes":' + orjson.dumps(outcomes).decode()
            + ',"VWState":' + state + "}")
