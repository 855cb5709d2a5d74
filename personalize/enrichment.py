"""Context enrichment: plugins add context features on the server before a Rank is ranked.

Every plugin implementing ``enrich_context`` is asked once per Rank with a ``RankContext`` (the
request time in the request's time zone, the HTTP headers, the client's features) and returns a
feature object, e.g. ``{"time": {"dayPart": "evening"}}``. The bundled plugins add the time of day
and day of week (``plugins/time_context.py``) and the device class from the User-Agent
(``plugins/device_context.py``), so clients that send no context still get contextual learning.

What the client sent wins: a top-level name (namespace) the client's ``contextFeatures`` already
has is not added again, and among plugins the first to add a name wins. The added features are
validated and counted like the client's (``max_features``, ``max_crossed_features``) and logged
with the event, so off-policy evaluation and the DSJSON export see what the model saw.

The time zone is the client's context feature ``timeZone`` (an IANA name such as
``Europe/Rome``, at the top level of a feature object), else the setting ``time_zone``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, tzinfo
from functools import lru_cache
from typing import Any, Mapping, Sequence
from zoneinfo import ZoneInfo

from personalize.api.errors import ApiError
from personalize.config import is_time_zone
from personalize.features import CONTEXT_INDEX, FeatureBudget, counted_namespaces

__all__ = ["RankContext", "Enricher", "TIME_ZONE_FEATURE", "time_zone", "is_time_zone"]

log = logging.getLogger(__name__)

#: A common browser's User-Agent, for the warm-up call.
WARM_USER_AGENT = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 "
                   "Safari/537.36")
#: The context feature a client sends its visitor's time zone in: [{"timeZone": "Europe/Rome"}].
TIME_ZONE_FEATURE = "timeZone"


@dataclass(frozen=True)
class RankContext:
    """What a context plugin may read about one Rank call (read-only)."""

    time: datetime  # the request time, time-zone aware, in the request's time zone
    headers: Mapping[str, str]  # the HTTP request's headers (case-insensitive); empty for in-process calls
    features: Sequence[Mapping[str, Any]]  # the client's contextFeatures, validated
    user_id: str | None

    @property
    def user_agent(self) -> str | None:
        return self.headers.get("User-Agent") or None


@lru_cache(maxsize=512)
def time_zone(name: str) -> tzinfo:
    return ZoneInfo(name)


def _client_names(context: Mapping[str, Any]) -> set[str]:
    """The top-level feature names of the client's context, from its VW namespaces (``c_user`` -> ``user``)."""
    names = set(context.get(CONTEXT_INDEX, ()))
    prefix = f"{CONTEXT_INDEX}_"
    names.update(key[len(prefix):] for key in context if key.startswith(prefix))
    return names


class Enricher:
    """Asks the context plugins for features and merges them into a parsed Rank (``service.RankRequest``)."""

    def __init__(self, default_time_zone: str, enabled: bool = True) -> None:
        from personalize.plugins import context_features  # the plugin manager imports the bundled plugins

        self.default_zone = time_zone(default_time_zone)
        self.enabled = enabled
        self._ask = context_features

    def warm(self) -> None:
        """Call every context plugin once with a typical browser request, so one-time costs (ua-parser compiles its
        rules on first use: 0.2 s) are paid at start, not by the first visitor's Rank."""
        if not self.enabled:
            return
        try:
            self._ask(RankContext(datetime.now(self.default_zone), {"User-Agent": WARM_USER_AGENT}, [], None))
        except Exception:  # a broken plugin fails the Rank calls loudly; here it only loses the warm-up
            log.exception("a context plugin failed on the start-up warm-up call")

    def zone(self, context: Mapping[str, Any], body: Mapping[str, Any]) -> tzinfo:
        """The request's time zone: the client's ``timeZone`` feature, else the setting; unknown names are a 400."""
        name = context.get(CONTEXT_INDEX, {}).get(TIME_ZONE_FEATURE)
        if name is None:
            return self.default_zone
        if not is_time_zone(name):
            target = _feature_path(body.get("contextFeatures"), TIME_ZONE_FEATURE)
            raise ApiError(400, "InvalidFeatures", f"{target} must be an IANA time zone name such as \"Europe/Rome\" or "
                           f"\"America/New_York\", not {str(name)[:80]!r}.", target)
        return time_zone(name)

    def enrich(self, context: dict[str, Any], budget: FeatureBudget, body: Mapping[str, Any],
               headers: Mapping[str, str], now: float, user_id: str | None) -> int:
        """Add the plugins' features to ``context`` (VW namespaces, changed in place); returns how many VW features
        they make (at least), as ``counted_namespaces`` counts them."""
        zone = self.zone(context, body)
        if not self.enabled:
            return 0
        features = body.get("contextFeatures")
        request = RankContext(datetime.fromtimestamp(now, zone), headers,
                              features if isinstance(features, list) else [features] if features else [], user_id)
        taken = _client_names(context)
        added: list[dict[str, Any]] = []
        for result in self._ask(request):
            fresh = {key: value for key, value in result.items() if key not in taken}
            if fresh:
                taken.update(fresh)
                added.append(fresh)
        if not added:
            return 0
        try:
            namespaces, count = counted_namespaces(added, "contextFeatures", CONTEXT_INDEX, budget)
        except ApiError as exc:
            if exc.code == "TooManyFeatures":  # the client's features and the plugins' together: the client can send fewer
                raise ApiError(400, exc.code, f"{exc.message} The count includes the features the server's context "
                               f"plugins add ({', '.join(sorted(k for a in added for k in a))}; setting enrich_context).",
                               "contextFeatures") from None
            raise RuntimeError(f"a context plugin returned features VW cannot take: {exc.message}") from None
        for key, value in namespaces.items():
            context[key] = {**context[key], **value} if key in context else value
        return count


def _feature_path(features: Any, name: str) -> str:
    """The JSON path of a top-level feature in a contextFeatures list (for error targets)."""
    objects = features if isinstance(features, list) else [features]
    for i, obj in enumerate(objects):
        if isinstance(obj, dict) and name in obj:
            return f"contextFeatures[{i}].{name}" if isinstance(features, list) else f"contextFeatures.{name}"
    return f"contextFeatures.{name}"
