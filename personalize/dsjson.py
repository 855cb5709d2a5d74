"""VW decision-service JSON (DSJSON) lines for logged events.

The learner trains on exactly these lines, so exporting them and training a fresh VW
reproduces the service's model.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import orjson

from personalize.models import Event

__all__ = ["event_line"]


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


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
