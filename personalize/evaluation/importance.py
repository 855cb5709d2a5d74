"""Feature importance: how much each feature, as the client sent it, moves the model's decisions.

Drop-one importance on the logged events: for every feature (namespace and name, context or action)
the model scores each event twice, with the event as logged and with that feature removed (from the
context, or from every action), and the feature's score is the mean total-variation distance between
the two action distributions: the share of probability the model moves because of that feature, from
0 (never looked at) to 1 (decides everything). Crosses (``-q ca``) count for the features in them,
because the model's own predictions are compared, not its weights. Scores are not normalized, so two
jobs on the same model are comparable.

The model is the newest snapshot (the one serving Rank); with none yet, a model trained on the
range's events under the policy in force.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

import numpy as np
import orjson

from personalize.features import ACTION_ID_NAMESPACE, ACTION_INDEX, CONTEXT_INDEX
from personalize.vw import Model

__all__ = ["feature_importance", "MAX_EVENTS", "MAX_FEATURES"]

#: The most recent events of the range that are scored (bounds the job's work: features x events predictions).
MAX_EVENTS = 5_000
#: The most frequent features that are scored.
MAX_FEATURES = 200

Path = tuple[str, ...]  # keys from the context object (or an action object) down to a namespace object
FeatureKey = tuple[str, Path, str]  # (group: "c" or "a", namespace path, feature name)


def _namespace_name(key: str, group: str) -> str:
    if key == group:
        return ""  # features sent outside any namespace
    return key[2:] if key.startswith(group + "_") else key


def _walk(obj: dict[str, Any], group: str, path: Path) -> Iterator[FeatureKey]:
    for name, value in obj.items():
        if isinstance(value, dict) and name.startswith(group + "_"):  # a nested namespace
            yield from _walk(value, group, path + (name,))
        else:
            yield (group, path, name)


def _features(context: dict[str, Any]) -> Iterator[FeatureKey]:
    for key, value in context.items():
        if key == "_multi" or not isinstance(value, dict):
            continue
        yield from _walk(value, CONTEXT_INDEX, (key,))
    seen: set[FeatureKey] = set()
    for action in context.get("_multi", []):
        for key, value in action.items():
            if key == f"{ACTION_INDEX}_{ACTION_ID_NAMESPACE}" or not isinstance(value, dict):
                continue  # the action id the service adds is not a feature the client sent
            for feature in _walk(value, ACTION_INDEX, (key,)):
                if feature not in seen:
                    seen.add(feature)
                    yield feature


def _without(obj: dict[str, Any], path: Path, name: str) -> tuple[dict[str, Any], bool]:
    """``obj`` with feature ``name`` of namespace ``path`` removed (copied on the way down), and whether it was there."""
    if not path:
        if name not in obj:
            return obj, False
        return {k: v for k, v in obj.items() if k != name}, True
    inner = obj.get(path[0])
    if not isinstance(inner, dict):
        return obj, False
    changed, found = _without(inner, path[1:], name)
    return ({**obj, path[0]: changed}, True) if found else (obj, False)


def _drop(context: dict[str, Any], feature: FeatureKey) -> dict[str, Any] | None:
    group, path, name = feature
    if group == CONTEXT_INDEX:
        out, found = _without(context, path, name)
        return out if found else None
    actions, any_found = [], False
    for action in context.get("_multi", []):
        changed, found = _without(action, path, name)
        actions.append(changed)
        any_found |= found
    return {**context, "_multi": actions} if any_found else None


def _pmf(model: Model, context: dict[str, Any]) -> np.ndarray:
    prediction = model.predict('{"c":' + orjson.dumps(context).decode() + "}")
    pmf = np.zeros(len(context.get("_multi", [])))
    for index, p in prediction:
        pmf[index] = max(float(p), 0.0)
    total = pmf.sum()
    return pmf / total if total > 0 else pmf


def feature_importance(contexts: Sequence[dict[str, Any]], model: Model,
                       progress: Callable[[float], None] = lambda f: None) -> list[dict[str, Any]]:
    """``[{"namespace", "featureName", "score", "group", "events"}]``, most important first."""
    contexts = list(contexts)[-MAX_EVENTS:]
    counts: dict[FeatureKey, int] = {}
    for context in contexts:
        for feature in _features(context):
            counts[feature] = counts.get(feature, 0) + 1
    features = sorted(counts, key=lambda f: -counts[f])[:MAX_FEATURES]
    base = [_pmf(model, c) for c in contexts]
    scores = []
    for number, feature in enumerate(features):
        moved = 0.0
        for context, pmf in zip(contexts, base):
            dropped = _drop(context, feature)
            if dropped is not None:
                moved += 0.5 * float(np.abs(_pmf(model, dropped) - pmf).sum())
        group, path, name = feature
        scores.append({"namespace": _namespace_name(path[-1], group), "featureName": name,
                       "score": moved / len(contexts), "group": "context" if group == CONTEXT_INDEX else "action",
                       "events": counts[feature]})
        progress((number + 1) / len(features))
    scores.sort(key=lambda s: (-s["score"], s["namespace"], s["featureName"]))
    return scores
