"""Context plugin: the time of day and day of week of each Rank, in the request's time zone.

Adds ``{"time": {"dayPart": "evening", "dayOfWeek": "Friday", "weekend": false}}`` (``weekend``
only when true: VW takes false as absent). Day parts are categories, not the hour as a number:
a linear model learns "evenings" and "mornings" apart, which it cannot from one numeric hour.
The time zone is the client's ``timeZone`` context feature, else the setting ``time_zone``.
"""

from __future__ import annotations

from typing import Any

from personalize.enrichment import RankContext
from personalize.hookspecs import hookimpl

#: (first hour, name): night 0-6, morning 6-12, afternoon 12-18, evening 18-24.
DAY_PARTS = ((0, "night"), (6, "morning"), (12, "afternoon"), (18, "evening"))
_PART_OF_HOUR = tuple(next(name for start, name in reversed(DAY_PARTS) if hour >= start) for hour in range(24))
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def time_features(context: RankContext) -> dict[str, Any]:
    weekday = context.time.weekday()
    features: dict[str, Any] = {"dayPart": _PART_OF_HOUR[context.time.hour], "dayOfWeek": _DAYS[weekday]}
    if weekday >= 5:
        features["weekend"] = True
    return {"time": features}


@hookimpl
def enrich_context(context: RankContext) -> dict[str, Any] | None:
    return time_features(context)
