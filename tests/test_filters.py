"""Rank's metadata filter: semantics against a one-item-at-a-time reference, validation, and the schema."""

from __future__ import annotations

import math
from typing import Any

import jsonschema_rs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from personalize.api.errors import ApiError
from personalize.api.schemas import components
from personalize.config import Settings
from personalize.filters import MAX_FILTER_FIELDS, OPERATORS, CatalogColumns, parse_filter

WORDS = ["Comedy", "Drama", "comedy", "Action", "1990", ""]


# -- the reference: MongoDB's rules, one item at a time, as docs/api.md states them ---------------------
def _kind(value: Any) -> str:
    return "bool" if isinstance(value, bool) else "number" if isinstance(value, (int, float)) else "str"


def _elements(value: Any) -> list[Any]:
    return [] if value is None else value if isinstance(value, list) else [value]


def _equal(value: Any, wanted: Any) -> bool:
    if wanted is None:
        return value is None
    return any(_kind(e) == _kind(wanted) and e == wanted for e in _elements(value))


def _holds(value: Any, op: str, operand: Any) -> bool:
    if op == "$eq":
        return _equal(value, operand)
    if op == "$ne":
        return not _equal(value, operand)
    if op == "$in":
        return any(_equal(value, v) for v in operand)
    if op == "$nin":
        return not any(_equal(value, v) for v in operand)
    compare = {"$gt": lambda a, b: a > b, "$gte": lambda a, b: a >= b, "$lt": lambda a, b: a < b, "$lte": lambda a, b: a <= b}[op]
    return any(_kind(e) == _kind(operand) and compare(e, operand) for e in _elements(value))


def reference(features: dict[str, Any], item_filter: dict[str, Any]) -> bool:
    for name, condition in item_filter.items():
        conditions = condition if isinstance(condition, dict) else {"$eq": condition}
        if not all(_holds(features.get(name), op, operand) for op, operand in conditions.items()):
            return False
    return True


# -- strategies ---------------------------------------------------------------------------------------
numbers = st.one_of(st.integers(-5, 2030), st.sampled_from([1990.0, 1990.5, -0.0, 2.5]))
scalars = st.one_of(numbers, st.sampled_from(WORDS[:-1]), st.booleans())
feature_values = st.one_of(scalars, st.lists(st.sampled_from(WORDS[:-1]), max_size=3),
                           st.lists(numbers, max_size=3))
catalogs = st.lists(st.dictionaries(st.sampled_from(["genres", "year", "kid", "title"]), feature_values, max_size=4),
                    min_size=1, max_size=25)
operands = st.one_of(scalars, st.none())
ranged = st.one_of(numbers, st.sampled_from(WORDS[:-1]))
conditions = st.one_of(
    operands,
    st.dictionaries(st.sampled_from(["$eq", "$ne"]), operands, min_size=1, max_size=2),
    st.dictionaries(st.sampled_from(["$in", "$nin"]), st.lists(operands, max_size=4), min_size=1, max_size=2),
    st.dictionaries(st.sampled_from(["$gt", "$gte", "$lt", "$lte"]), ranged, min_size=1, max_size=3),
)
filters = st.dictionaries(st.sampled_from(["genres", "year", "kid", "title", "missing"]), conditions, max_size=4)


@settings(max_examples=400, deadline=None)
@given(catalog=catalogs, item_filter=filters)
def test_a_filter_selects_exactly_the_items_the_reference_does(catalog: list[dict[str, Any]], item_filter: dict[str, Any]) -> None:
    columns = CatalogColumns([f"i{k}" for k in range(len(catalog))], catalog)
    compiled = parse_filter(item_filter)
    expected = [reference(features, item_filter) for features in catalog]
    if compiled is None:
        assert item_filter == {} and all(expected)
        return
    assert compiled.mask(columns).tolist() == expected
    allowed = compiled.allowed(columns)
    assert [f"i{k}" in allowed for k in range(len(catalog))] == expected
    assert allowed.ids == {f"i{k}" for k, ok in enumerate(expected) if ok}
    other_order = list(reversed(columns.item_ids))  # a generator fitted on another catalog order
    assert allowed.mask_for(other_order).tolist() == list(reversed(expected))


def test_documented_examples() -> None:
    catalog = [{"genres": ["Comedy", "Drama"], "year": 1995}, {"genres": ["Drama"], "year": 1985}, {"year": "2001", "kid": True}, {}]
    columns = CatalogColumns(["a", "b", "c", "d"], catalog)

    def matches(item_filter: dict[str, Any]) -> str:
        compiled = parse_filter(item_filter)
        assert compiled is not None
        return "".join(item for item, ok in zip("abcd", compiled.mask(columns)) if ok)

    assert matches({"genres": {"$in": ["Comedy"]}, "year": {"$gte": 1990}}) == "a"
    assert matches({"genres": "Drama"}) == "ab"                     # a bare value is $eq; any element matches
    assert matches({"genres": {"$nin": ["Drama"]}}) == "cd"         # no element may match; missing passes
    assert matches({"genres": {"$ne": "Comedy"}}) == "bcd"
    assert matches({"year": {"$gte": 1990.0}}) == "a"               # numbers with numbers only
    assert matches({"year": {"$gte": "2000"}}) == "c"               # strings with strings only
    assert matches({"kid": True}) == "c" and matches({"kid": 1}) == ""  # true is not 1
    assert matches({"year": None}) == "d" and matches({"year": {"$ne": None}}) == "abc"
    assert matches({"genres": {"$in": []}}) == "" and matches({"genres": {"$nin": []}}) == "abcd"
    assert columns.missing(parse_filter({"genre": "Comedy", "year": 1}) or pytest.fail()) == ["genre"]


@pytest.mark.parametrize(("item_filter", "target"), [
    ([{"genres": "Comedy"}], "filter"),
    ("Comedy", "filter"),
    ({"$or": [{"year": 1990}]}, "filter.$or"),
    ({"year": {"$foo": 1}}, "filter.year.$foo"),
    ({"year": {"gte": 1}}, "filter.year.gte"),
    ({"genres": {"$in": "Comedy"}}, "filter.genres.$in"),
    ({"genres": {"$nin": {"a": 1}}}, "filter.genres.$nin"),
    ({"genres": {"$in": ["Comedy", ["Drama"]]}}, "filter.genres.$in[1]"),
    ({"year": {"$gt": [1990]}}, "filter.year.$gt"),
    ({"year": {"$gt": True}}, "filter.year.$gt"),
    ({"year": {"$lte": None}}, "filter.year.$lte"),
    ({"year": {"$lt": {"$gt": 1}}}, "filter.year.$lt"),
    ({"year": {"$eq": [1990]}}, "filter.year.$eq"),
    ({"year": {"$ne": {"a": 1}}}, "filter.year.$ne"),
    ({"genres": ["Comedy"]}, "filter.genres"),
    ({"genres": {}}, "filter.genres"),
    ({"_hidden": 1}, "filter._hidden"),
    ({"": 1}, "filter."),
    ({"title": "x" * 5000}, "filter.title"),
    ({f"f{i}": 1 for i in range(MAX_FILTER_FIELDS + 1)}, "filter"),
    ({"genres": {"$in": ["a"] * 1001}}, "filter.genres.$in"),
])
def test_bad_filters_are_a_400_naming_the_field(item_filter: Any, target: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_filter(item_filter)
    assert (caught.value.status, caught.value.code, caught.value.target) == (400, "InvalidFilter", target)
    assert caught.value.message.startswith(target)


# -- the ItemFilter schema in /openapi.json says what the code accepts ----------------------------------
_SCHEMA = jsonschema_rs.Draft202012Validator(
    {"components": {"schemas": components(Settings())}, "$ref": "#/components/schemas/ItemFilter"})
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=5))
near_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3),
    st.dictionaries(st.sampled_from([*OPERATORS, "$foo", "eq", "year"]), inner, max_size=3)), max_leaves=6)
near_filters = st.one_of(
    near_values,
    st.dictionaries(st.one_of(st.sampled_from(["genres", "year", "$or", "_x", "", "$in"]), st.text(max_size=4)),
                    near_values, max_size=4),
)


@settings(max_examples=500, deadline=None)
@given(item_filter=near_filters)
def test_the_schema_and_the_code_accept_the_same_filters(item_filter: Any) -> None:
    try:
        parse_filter(item_filter)
        accepted = True
    except ApiError:
        accepted = False
    assert _SCHEMA.is_valid(item_filter) == accepted, item_filter


def test_numbers_are_finite() -> None:
    with pytest.raises(ApiError):
        parse_filter({"year": 10**400})
    assert parse_filter({"year": -0.0}) is not None and math.isfinite(1990)
