"""Personalizer feature JSON -> the VW DSJSON ``c`` object, validated field by field.

Personalizer sends ``contextFeatures`` and each action's ``features`` as lists of JSON
objects. We merge each list into one object and hand VW exactly what its own JSON/DSJSON
parser reads: top-level keys holding objects are namespaces, strings are categorical
(``key=value``), numbers are numeric, booleans are present/absent, arrays of numbers are
positional features, nested objects are flattened into their own namespace. The one
convenience we add is that an array of strings (``"genres": ["Comedy", "Drama"]``) becomes
the categorical object ``{"Comedy": 1, "Drama": 1}`` — VW's parser rejects string arrays.
Namespaces are logged with a group prefix (``c_`` for context, ``a_`` for actions) so that one
interaction, ``-q ca``, crosses everything a client says about the user with everything it
says about the actions.

The resulting ``c`` text is stored with the event, so replaying the log in VW sees
byte-for-byte what the service learned from.

Every walk is bounded: a ``FeatureBudget`` (setting ``max_features``) is charged with each
object's and array's size before its entries are visited, so a huge feature list stops at the
first entry over the limit, and nesting stops at ``MAX_DEPTH``. ``counted_namespaces`` also returns
the number of features VW makes of the list (what ``personalize.limits`` crosses).
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from personalize.api.errors import ApiError

__all__ = ["FeatureError", "FeatureBudget", "merge_feature_list", "feature_namespaces", "counted_namespaces",
           "vw_feature_count", "build_context", "ACTION_ID_NAMESPACE", "CONTEXT_INDEX", "ACTION_INDEX", "MAX_DEPTH",
           "MAX_MAGNITUDE"]

#: Namespace holding each action's id as a categorical feature, so per-action effects can be
#: learned even when actions carry few features. Reserved: clients may not use it.
ACTION_ID_NAMESPACE = "ActionId"
#: VW groups namespaces by their first character (the namespace index), and interactions such
#: as ``-q ca`` address those groups. Context namespace ``user`` is logged as ``c_user`` and
#: action namespace ``genres`` as ``a_genres`` (features outside any namespace go to ``c``/``a``),
#: so ``-q ca`` crosses every context feature with every action feature, whatever the names.
CONTEXT_INDEX = "c"
ACTION_INDEX = "a"
MAX_DEPTH = 8
MAX_KEY_LENGTH = 256
MAX_STRING_LENGTH = 4096
#: Largest numeric feature magnitude. VW learns in float32 and squares (crossed) feature values
#: in its update. Measured with the default policy: one value of 1e19, or two crossed values of
#: 1e10, turn the weights into NaN/inf within 400 events; two crossed values of 1e9 within 20,000.
#: Crosses of two values at this bound (1e16) stayed finite over 100,000 events. Larger values are
#: refused with a hint to rescale, never learned into a broken model.
MAX_MAGNITUDE = 1e8


class FeatureError(ApiError):
    def __init__(self, message: str, target: str) -> None:
        super().__init__(400, "InvalidFeatures", message, target)


class FeatureBudget:
    """How many feature entries one Rank may send (setting ``max_features``), charged as the walk goes.

    An entry is a name/value pair (a namespace object's name too) or an array element: what the
    walk visits, and at least as many as the features VW makes of them. Each object or array is
    charged its size before it is visited, so a request over the limit costs no more than the limit.
    """

    __slots__ = ("limit", "used")

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.used = 0

    def spend(self, entries: int, path: str) -> None:
        self.used += entries
        if self.used > self.limit:
            raise ApiError(
                400, "TooManyFeatures",
                f"{path} brings this Rank to at least {self.used} feature entries (names, values and array elements "
                f"of contextFeatures and every action's features); at most {self.limit} are accepted "
                "(setting max_features): send fewer features or actions (a smaller numCandidates for generated candidates), "
                "or raise PERSONALIZE_MAX_FEATURES.",
                path,
            )


def _clean_value(value: Any, path: str, depth: int, budget: FeatureBudget) -> Any:
    if value is None or isinstance(value, bool) or isinstance(value, str):
        if isinstance(value, str) and len(value) > MAX_STRING_LENGTH:
            raise FeatureError(f"{path} is longer than {MAX_STRING_LENGTH} characters; shorten it.", path)
        return value
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise FeatureError(f"{path} must be a finite number, not {value!r}.", path)
        if not -MAX_MAGNITUDE <= value <= MAX_MAGNITUDE:
            raise FeatureError(_too_large(path, value), path)
        return value
    if isinstance(value, dict):
        return _clean_object(value, path, depth + 1, budget)
    if isinstance(value, list):
        budget.spend(len(value), path)
        if all(isinstance(v, str) for v in value):
            if any(len(v) > MAX_STRING_LENGTH for v in value):
                raise FeatureError(f"{path} holds a string longer than {MAX_STRING_LENGTH} characters.", path)
            if any(not v or v[0] == "_" for v in value):  # each string becomes a feature name
                raise FeatureError(f"{path} holds an empty string or one starting with '_': each becomes a feature "
                                   "name, and VW has none for the first and reserves the second; drop or rename it.", path)
            return {v: 1 for v in value}
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            for i, v in enumerate(value):
                if not math.isfinite(v):
                    raise FeatureError(f"{path}[{i}] must be a finite number, not {v!r}.", f"{path}[{i}]")
                if not -MAX_MAGNITUDE <= v <= MAX_MAGNITUDE:
                    raise FeatureError(_too_large(f"{path}[{i}]", v), f"{path}[{i}]")
            return value
        if all(isinstance(v, dict) for v in value):
            return [_clean_object(v, f"{path}[{i}]", depth + 1, budget) for i, v in enumerate(value)]
        if any(isinstance(v, list) for v in value):
            raise FeatureError(f"{path} holds an array inside an array; features nest only through objects, so flatten "
                               "it (or make the inner arrays objects).", path)
        raise FeatureError(
            f"{path} mixes types; an array feature must hold only numbers, only strings or only objects.", path
        )
    raise FeatureError(f"{path} has unsupported type {type(value).__name__}.", path)


def _too_large(path: str, value: float) -> str:
    return (f"{path} = {value!r} is beyond +-{MAX_MAGNITUDE:g}: VW learns in float32 and values this large "
            "overflow it; rescale the feature (e.g. hours since a start time instead of UNIX seconds, or its log).")


def _clean_object(obj: dict[str, Any], path: str, depth: int, budget: FeatureBudget) -> dict[str, Any]:
    """``obj`` validated; ``depth`` counts the objects it sits in (top level: 1).

    Copy on write: an object that needs no change (the usual case) is returned as it is, and
    is never modified, so callers may pass objects they keep (catalog features, request bodies).
    """
    if depth > MAX_DEPTH + 1:
        raise FeatureError(f"{path} is nested deeper than {MAX_DEPTH} levels; flatten the feature object.", path)
    budget.spend(len(obj), path)
    out: dict[str, Any] | None = None
    for key, value in obj.items():
        if not key or key[0] == "_" or len(key) > MAX_KEY_LENGTH:
            child = f"{path}.{key}"
            if not key:
                raise FeatureError(f"{path} has an empty feature name; name every feature.", path)
            if key[0] == "_":
                raise FeatureError(f"{child}: feature names may not start with '_' (VW reserves them); rename the feature.", child)
            raise FeatureError(f"{child[:80]}...: feature names are limited to {MAX_KEY_LENGTH} characters.", path)
        kind = type(value)
        # One type test per common scalar; anything else (or a bad scalar) goes through _clean_value.
        if kind is str:
            if len(value) <= MAX_STRING_LENGTH:
                continue
        elif kind is bool or value is None:
            continue
        elif kind is int or kind is float:
            if -MAX_MAGNITUDE <= value <= MAX_MAGNITUDE:  # false for nan
                continue
        elif kind is dict:
            cleaned = _clean_object(value, f"{path}.{key}", depth + 1, budget)
            if cleaned is value:
                continue
            if out is None:
                out = dict(obj)
            out[key] = cleaned
            continue
        cleaned = _clean_value(value, f"{path}.{key}", depth, budget)
        if cleaned is not value:
            if out is None:
                out = dict(obj)
            out[key] = cleaned
    return obj if out is None else out


def _merge(into: dict[str, Any], new: dict[str, Any], path: str) -> None:
    """Merge ``new`` into ``into`` (a copy the caller owns); nested objects are copied before they change."""
    for key, value in new.items():
        if key not in into:
            into[key] = value
        elif isinstance(into[key], dict) and isinstance(value, dict):
            into[key] = dict(into[key])
            _merge(into[key], value, f"{path}.{key}")
        else:
            raise FeatureError(
                f"{path}.{key} is given twice with conflicting values; send each feature once.", f"{path}.{key}"
            )


def merge_feature_list(features: Any, path: str, budget: FeatureBudget | None = None) -> dict[str, Any]:
    """Validate a Personalizer feature list (array of objects) and merge it into one object.

    The result may share (unchanged) objects with ``features``; treat it as read-only.
    """
    if budget is None:
        budget = FeatureBudget(math.inf)
    if features is None:
        return {}
    if isinstance(features, dict):  # tolerate a single object where a list is expected
        features = [features]
    elif not isinstance(features, list):
        raise FeatureError(f"{path} must be an array of JSON objects, e.g. [{{\"user\": {{\"age\": 30}}}}].", path)
    budget.spend(len(features), path)
    merged: dict[str, Any] | None = None
    for i, obj in enumerate(features):
        if not isinstance(obj, dict):
            item_path = f"{path}[{i}]"
            raise FeatureError(f"{item_path} must be a JSON object, not {type(obj).__name__}.", item_path)
        cleaned = _clean_object(obj, f"{path}[{i}]", 1, budget)
        if merged is None:
            merged = cleaned
        else:
            if i == 1:
                merged = dict(merged)  # never modify the caller's objects
            _merge(merged, cleaned, path)
    if merged is None:
        return {}
    if ACTION_ID_NAMESPACE in merged:
        raise FeatureError(f"{path}.{ACTION_ID_NAMESPACE} is reserved by the service; rename it.", path)
    return merged


def _split(obj: dict[str, Any], index: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(scalar features, objects and arrays under prefixed keys). VW makes every object or array
    a namespace of its own, indexed by its key's first character: the prefix keeps it in the group."""
    loose: dict[str, Any] = {}
    grouped: dict[str, Any] = {}
    for key, value in obj.items():
        kind = type(value)
        if kind is dict:
            grouped[f"{index}_{key}"] = _nested(value, index)
        elif kind is list:
            grouped[f"{index}_{key}"] = [_nested(v, index) for v in value] if value and type(value[0]) is dict else value
        else:
            loose[key] = value
    return loose, grouped


def _nested(obj: dict[str, Any], index: str) -> dict[str, Any]:
    """A namespace object with its nested namespaces prefixed (itself when it has none)."""
    for value in obj.values():
        if type(value) is dict or type(value) is list:
            loose, grouped = _split(obj, index)
            return {**loose, **grouped}
    return obj


def _namespaces(features: dict[str, Any], index: str) -> dict[str, Any]:
    """Merged features as VW namespaces of one group: ``{"user": {...}, "age": 3}`` -> ``{"c_user": {...}, "c": {"age": 3}}``."""
    loose, grouped = _split(features, index)
    if loose:
        grouped[index] = loose
    return grouped


def _flat(obj: dict[str, Any]) -> bool:
    """True when every feature of ``obj`` is a valid name with a valid scalar value (the usual namespace)."""
    key_limit, string_limit, high = MAX_KEY_LENGTH, MAX_STRING_LENGTH, MAX_MAGNITUDE  # locals: the hot loop
    low = -high
    for key, value in obj.items():
        if not key or key[0] == "_" or len(key) > key_limit:
            return False
        kind = type(value)
        if kind is str:
            if len(value) > string_limit:
                return False
        elif kind is float or kind is int:
            if not low <= value <= high:  # also nan
                return False
        elif kind is not bool and value is not None:
            return False
    return True


#: Largest magnitude that float32, hence VW, rounds to 0 (2**-150): such a number makes no feature.
_FLOAT32_ZERO = 2.0 ** -150


def vw_feature_count(value: Any) -> int:
    """How many features VW makes of validated namespaces (or one value of them): strings, true and
    numbers that are not 0 in float32 are one each; null and false none; objects and arrays their contents."""
    kind = type(value)
    if kind is dict:
        return sum(vw_feature_count(v) for v in value.values())
    if kind is list:
        return sum(vw_feature_count(v) for v in value)
    if kind is str:
        return 1
    if kind is bool:
        return 1 if value else 0
    if value is None or -_FLOAT32_ZERO <= value <= _FLOAT32_ZERO:
        return 0
    return 1


def counted_namespaces(features: Any, path: str, index: str, budget: FeatureBudget) -> tuple[dict[str, Any], int]:
    """``feature_namespaces`` charging ``budget`` with the list's entries, and at least how many features VW
    makes of it: exactly ``vw_feature_count`` on the careful path, the list's entries (one per feature,
    plus its objects and names) on the one pass, which does not look at every value twice;
    ``limits.RankLimits`` counts exactly when that bound is over its limit.

    The usual list (objects of scalars and flat objects, no name given twice) is handled in one pass
    here; anything else (or more entries than the budget has left) takes the careful path, which
    handles or rejects it.
    """
    if type(features) is not list:
        return _careful_namespaces(features, path, index, budget)
    left = budget.limit - budget.used
    sent = len(features)
    if sent > left:
        return _careful_namespaces(features, path, index, budget)
    grouped: dict[str, Any] = {}
    loose: dict[str, Any] = {}
    seen: set[str] = set()
    for obj in features:
        if type(obj) is not dict or ACTION_ID_NAMESPACE in obj:
            return _careful_namespaces(features, path, index, budget)
        sent += len(obj)
        if sent > left:
            return _careful_namespaces(features, path, index, budget)
        for key, value in obj.items():
            if key in seen:
                return _careful_namespaces(features, path, index, budget)
            seen.add(key)
            if type(value) is dict:
                sent += len(value)
                if sent > left or not key or key[0] == "_" or len(key) > MAX_KEY_LENGTH or not _flat(value):
                    return _careful_namespaces(features, path, index, budget)
                grouped[f"{index}_{key}"] = value
            else:
                loose[key] = value
    if loose:
        if not _flat(loose):
            return _careful_namespaces(features, path, index, budget)
        grouped[index] = loose
    budget.used += sent
    return grouped, sent


def _careful_namespaces(features: Any, path: str, index: str, budget: FeatureBudget) -> tuple[dict[str, Any], int]:
    """Any feature list validated, merged and counted exactly, or the error that names what is wrong."""
    namespaces = _namespaces(merge_feature_list(features, path, budget), index)
    return namespaces, vw_feature_count(namespaces)


def feature_namespaces(features: Any, path: str, index: str) -> dict[str, Any]:
    """A Personalizer feature list validated and merged (see ``merge_feature_list``) as the VW
    namespaces of group ``index``: ``[{"user": {...}}, {"age": 3}]`` -> ``{"c_user": {...}, "c": {"age": 3}}``.

    The usual list is handled in one pass; anything else (arrays, nested objects, a namespace
    given twice, an error to report) takes the careful path. The result may share (unchanged)
    objects with ``features``; treat it as read-only.
    """
    return counted_namespaces(features, path, index, FeatureBudget(math.inf))[0]


def build_context(context: dict[str, Any], actions: list[tuple[str, dict[str, Any]]], action_id: str) -> str:
    """The DSJSON ``c`` object (context + ``_multi``) as compact JSON text, from namespaces that
    ``feature_namespaces`` made (``CONTEXT_INDEX`` for the context, ``ACTION_INDEX`` for each action).

    ``action_id`` (setting ``action_id_feature``) decides where each action's id goes: ``cross``
    in the action group (``a_ActionId``: crossed with the context, a per-arm model), ``bias``
    outside it (``ActionId``: one weight per action), ``off`` nowhere, and ``auto`` crossed for
    actions without features of their own and nowhere for the others. Measured: with thousands of
    described items, per-item context crosses are mostly untrained weights that slow the shared
    ones; and an uncrossed per-action weight lets a few rewards in one context stop exploration
    in another (docs/learning-policy.md).
    """
    crossed_key = f"{ACTION_INDEX}_{ACTION_ID_NAMESPACE}"
    multi = []
    for action_id_value, namespaces in actions:
        if action_id == "cross" or (action_id == "auto" and not namespaces):
            namespaces = {**namespaces, crossed_key: {"id": action_id_value}}
        elif action_id == "bias":
            namespaces = {**namespaces, ACTION_ID_NAMESPACE: {"id": action_id_value}}
        multi.append(namespaces)
    # values were checked finite when the namespaces were made
    return orjson.dumps({**context, "_multi": multi}).decode()
