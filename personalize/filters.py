"""Rank's metadata ``filter``: Mongo-style conditions on catalog item features, checked once per request.

``{"genres": {"$in": ["Comedy"]}, "year": {"$gte": 1990}}`` — the form vector databases use.
Fields are combined by AND; a bare value means ``$eq``. Operators: ``$eq $ne $in $nin $gt $gte
$lt $lte``. Semantics follow MongoDB's:

- A list feature (``genres``) matches ``$eq``/``$in`` when *any* element matches, ``$ne``/``$nin``
  when *no* element does, and a range operator when any element is in range.
- Values compare within their type: numbers with numbers (``1990 == 1990.0``), strings with
  strings (exactly, case-sensitive; ranges by code point, so ISO dates compare as dates),
  booleans only by ``$eq $ne $in $nin``. A value of another type never matches
  (``{"year": {"$gte": "1990"}}`` matches no numeric year).
- ``null`` means "the item has no such feature": ``{"$eq": null}`` matches items without it,
  ``{"$ne": null}`` items with it. An item without the feature fails ``$eq $in $gt $gte $lt $lte``
  and passes ``$ne $nin``.

Why not a library: the Mongo-style evaluators on PyPI (``mongoquery``, ``mongomock``) test one
document at a time in Python, O(catalog) interpreted calls per Rank; here the catalog's features
are kept as NumPy columns per snapshot (``CatalogColumns``, built lazily per field) and a filter
is a few array operations, and validation names the exact field (``filter.year.$foo``).
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from personalize.api.errors import ApiError
from personalize.catalog import catalog_key
from personalize.features import MAX_KEY_LENGTH, MAX_STRING_LENGTH
from personalize.generator import AllowedItems

__all__ = ["ItemFilter", "CatalogColumns", "parse_filter", "OPERATORS", "MAX_FILTER_FIELDS", "MAX_FILTER_VALUES"]

#: Conditions one filter may hold, and values one $in/$nin list may hold (bounds the work of a Rank).
MAX_FILTER_FIELDS = 32
MAX_FILTER_VALUES = 1_000
EQUALITY = ("$eq", "$ne", "$in", "$nin")
RANGES = ("$gt", "$gte", "$lt", "$lte")
OPERATORS = EQUALITY + RANGES
_COMPARE: dict[str, Callable[[Any, Any], Any]] = {"$gt": operator.gt, "$gte": operator.ge, "$lt": operator.lt, "$lte": operator.le}
_EXAMPLE = '{"genres": {"$in": ["Comedy"]}, "year": {"$gte": 1990}}'


def _error(target: str, message: str) -> ApiError:
    return ApiError(400, "InvalidFilter", f"{target} {message}", target)


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    value: Any  # a scalar, None, or (for $in/$nin) a tuple of them


@dataclass(frozen=True)
class ItemFilter:
    """A validated filter: its conditions, ANDed."""

    conditions: tuple[Condition, ...]

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c.field for c in self.conditions))

    def mask(self, columns: "CatalogColumns") -> np.ndarray:
        """Which items of ``columns`` (in its order) satisfy every condition."""
        result = np.ones(columns.size, dtype=bool)
        for condition in self.conditions:
            result &= columns.column(condition.field).matches(condition.op, condition.value)
        return result

    def allowed(self, columns: "CatalogColumns") -> AllowedItems:
        return AllowedItems(columns.item_ids, self.mask(columns), columns.key, columns.index)


def _scalar(value: Any, target: str, what: str, hint: str = "") -> Any:
    """A filter value: a string, finite number, boolean or null; anything else is a 400 naming ``target``."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        if len(value) > MAX_STRING_LENGTH:
            raise _error(target, f"is longer than {MAX_STRING_LENGTH} characters (catalog strings are no longer).")
        return value
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise _error(target, "must be a finite number.")
        return value
    kind = "a list" if isinstance(value, list) else "an object" if isinstance(value, dict) else type(value).__name__
    raise _error(target, f"must be {what}, not {kind}{hint if isinstance(value, list) else ''}.")


def _operand(op: str, value: Any, target: str) -> Any:
    if op in ("$eq", "$ne"):
        return _scalar(value, target, "one string, number, boolean or null", "; use $in for several values")
    if op in ("$in", "$nin"):
        if not isinstance(value, list):
            raise _error(target, f"must be a list of values, e.g. {{\"{op}\": [\"Comedy\", \"Drama\"]}}.")
        if len(value) > MAX_FILTER_VALUES:
            raise _error(target, f"has {len(value)} values; at most {MAX_FILTER_VALUES} are accepted.")
        return tuple(_scalar(v, f"{target}[{i}]", "a string, number, boolean or null") for i, v in enumerate(value))
    if isinstance(value, bool) or value is None or not isinstance(value, (int, float, str)):
        raise _error(target, f"must be a number or a string ({op} compares numbers with numbers and strings with strings).")
    return _scalar(value, target, "a number or a string")


def parse_filter(value: Any, path: str = "filter") -> ItemFilter | None:
    """Validate a Rank's ``filter``; None when absent or empty. Every error is a 400 naming the field."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _error(path, f"must be an object of catalog feature name to condition, e.g. {_EXAMPLE}.")
    if len(value) > MAX_FILTER_FIELDS:
        raise _error(path, f"has {len(value)} fields; at most {MAX_FILTER_FIELDS} are accepted.")
    conditions: list[Condition] = []
    for name, condition in value.items():
        target = f"{path}.{name}"
        if name.startswith("$"):
            raise _error(target, "is not supported: a filter's fields are combined by AND (no $and/$or/$not); "
                                 f"name catalog features, e.g. {_EXAMPLE}.")
        if not name or name.startswith("_") or len(name) > MAX_KEY_LENGTH:
            raise _error(target, f"is not a catalog feature name (1 to {MAX_KEY_LENGTH} characters, not starting with '_').")
        if isinstance(condition, dict):
            if not condition:
                raise _error(target, f"is an empty condition; give an operator ({', '.join(OPERATORS)}) or a value.")
            for op, operand in condition.items():
                if op not in OPERATORS:
                    raise _error(f"{target}.{op}", f"is not an operator; use one of {', '.join(OPERATORS)}"
                                                   + ("" if op.startswith("$") else f" (operators start with '$', e.g. {{\"$eq\": ...}})") + ".")
                conditions.append(Condition(name, op, _operand(op, operand, f"{target}.{op}")))
        elif isinstance(condition, list):
            raise _error(target, f'is a list: say how it matches, {{"$in": [...]}} (any of these) or {{"$nin": [...]}} (none of these).')
        else:
            conditions.append(Condition(name, "$eq", _scalar(condition, target, "a string, number, boolean, null or an operator object")))
    return ItemFilter(tuple(conditions)) if conditions else None


class _Column:
    """One feature across the catalog, as element-level arrays: a scalar is one element, a list each of its own."""

    def __init__(self, name: str, features: Sequence[Mapping[str, Any]]) -> None:
        self.size = len(features)
        self.present = np.zeros(self.size, dtype=bool)
        numbers: tuple[list[int], list[float]] = ([], [])
        strings: tuple[list[int], list[str]] = ([], [])
        flags: tuple[list[int], list[bool]] = ([], [])
        for position, item in enumerate(features):
            value = item.get(name)
            if value is None:
                continue
            self.present[position] = True
            for element in value if type(value) is list else (value,):
                kind = type(element)
                target = flags if kind is bool else strings if kind is str else numbers
                target[0].append(position)
                target[1].append(element)
        self.number_at = np.array(numbers[0], dtype=np.int64)
        self.numbers = np.array(numbers[1], dtype=np.float64)
        self.string_at = np.array(strings[0], dtype=np.int64)
        self.strings = np.array(strings[1], dtype=object)
        self.flag_at = np.array(flags[0], dtype=np.int64)
        self.flags = np.array(flags[1], dtype=bool)
        self.by_string: dict[str, np.ndarray] = {}
        for value_, positions in _group(strings).items():
            self.by_string[value_] = np.array(positions, dtype=np.int64)

    def _any(self, positions: np.ndarray) -> np.ndarray:
        mask = np.zeros(self.size, dtype=bool)
        mask[positions] = True
        return mask

    def _equal(self, value: Any) -> np.ndarray:
        if value is None:
            return ~self.present
        if isinstance(value, bool):
            return self._any(self.flag_at[self.flags == value])
        if isinstance(value, str):
            return self._any(self.by_string.get(value, np.zeros(0, dtype=np.int64)))
        return self._any(self.number_at[self.numbers == float(value)])

    def _in(self, values: tuple[Any, ...]) -> np.ndarray:
        mask = np.zeros(self.size, dtype=bool)
        for value in values:
            mask |= self._equal(value)
        return mask

    def matches(self, op: str, value: Any) -> np.ndarray:
        if op == "$eq":
            return self._equal(value)
        if op == "$ne":
            return ~self._equal(value)
        if op == "$in":
            return self._in(value)
        if op == "$nin":
            return ~self._in(value)
        compare = _COMPARE[op]
        if isinstance(value, str):  # element-wise on the object array: Python's string order (code points)
            return self._any(self.string_at[np.asarray(compare(self.strings, value), dtype=bool)])
        return self._any(self.number_at[compare(self.numbers, float(value))])


def _group(pairs: tuple[list[int], list[str]]) -> dict[str, list[int]]:
    grouped: dict[str, list[int]] = {}
    for position, value in zip(*pairs):
        grouped.setdefault(value, []).append(position)
    return grouped


class CatalogColumns:
    """The catalog's features per field, for filters: built once per catalog snapshot, a field's column on first use."""

    def __init__(self, item_ids: Sequence[str], features: Sequence[Mapping[str, Any]]) -> None:
        self.item_ids = tuple(item_ids)
        self.features = tuple(features)
        self.size = len(self.item_ids)
        self.key = catalog_key(self.item_ids)
        self.index = {item: i for i, item in enumerate(self.item_ids)}
        self._columns: dict[str, _Column] = {}

    def column(self, name: str) -> _Column:
        column = self._columns.get(name)
        if column is None:  # two threads may build the same column at once: both results are equal
            column = self._columns[name] = _Column(name, self.features)
        return column

    def missing(self, item_filter: ItemFilter) -> list[str]:
        """The filter's fields that no catalog item has (a likely misspelling)."""
        return [name for name in item_filter.fields if not self.column(name).present.any()]
