"""Personalizer feature JSON -> VW: validation and the exact mapping VW's parser sees."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
import vowpal_wabbit_next as vw

from personalize.features import (ACTION_ID_NAMESPACE, ACTION_INDEX, CONTEXT_INDEX, FeatureError, _namespaces,
                                  build_context, feature_namespaces, merge_feature_list)


def test_feature_lists_merge_into_one_object() -> None:
    merged = merge_feature_list([{"user": {"age": 30}}, {"user": {"tier": "gold"}}, {"tod": "am"}], "contextFeatures")
    assert merged == {"user": {"age": 30, "tier": "gold"}, "tod": "am"}


def test_string_arrays_become_categorical_objects() -> None:
    assert merge_feature_list([{"item": {"genres": ["Comedy", "Drama"]}}], "f") == {"item": {"genres": {"Comedy": 1, "Drama": 1}}}


@pytest.mark.parametrize(
    ("features", "target"),
    [
        ("nope", "contextFeatures"),
        ([1], "contextFeatures[0]"),
        ([{"_label": 1}], "contextFeatures[0]._label"),
        ([{"a": float("nan")}], "contextFeatures[0].a"),
        ([{"a": [1, "x"]}], "contextFeatures[0].a"),
        ([{"a": 1}, {"a": 2}], "contextFeatures.a"),
        ([{ACTION_ID_NAMESPACE: {"id": "x"}}], "contextFeatures"),
    ],
)
def test_bad_features_name_the_field(features: object, target: str) -> None:
    with pytest.raises(FeatureError) as info:
        merge_feature_list(features, "contextFeatures")
    assert info.value.target == target
    assert info.value.status == 400


def test_context_parses_in_vw_with_one_example_per_action() -> None:
    context = feature_namespaces([{"user": {"age": 30, "tier": "gold"}}, {"flag": True}], "c", CONTEXT_INDEX)
    actions = [("a", feature_namespaces([{"item": {"price": 3.5, "tags": ["x"]}}], "a", ACTION_INDEX)), ("b", {})]
    text = build_context(context, actions, action_id="cross")
    workspace = vw.Workspace(["--cb_explore_adf", "--quiet"])
    examples = vw.DSJsonFormatParser(workspace).parse_json(json.dumps({"c": json.loads(text)}))
    assert len(examples) == 3  # shared + one per action
    logged = json.loads(text)
    assert logged["_multi"][1] == {f"a_{ACTION_ID_NAMESPACE}": {"id": "b"}}
    assert set(logged) == {"c_user", "c", "_multi"}  # grouped for "-q ca"; loose features in "c"
    assert set(logged["_multi"][0]) == {"a_item", "a_ActionId"}


def test_merging_never_modifies_the_callers_objects() -> None:
    import copy

    features = [{"user": {"age": 30}, "tags": ["a", "b"]}, {"user": {"tier": "gold"}}, {"item": {"g": ["x"]}}]
    before = copy.deepcopy(features)
    merged = merge_feature_list(features, "contextFeatures")
    assert merged == {"user": {"age": 30, "tier": "gold"}, "tags": {"a": 1, "b": 1}, "item": {"g": {"x": 1}}}
    assert features == before
    single = [{"item": {"price": 3.5, "kind": "k"}}]
    assert merge_feature_list(single, "f") == single[0]
    assert single == [{"item": {"price": 3.5, "kind": "k"}}]


_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCXYZ0123456789", min_size=1, max_size=6)
_scalars = st.one_of(st.integers(-5, 5), st.floats(-10, 10, allow_nan=False), st.booleans(),
                     st.text(alphabet="xyz", min_size=1, max_size=3))
_values = st.recursive(
    st.one_of(_scalars, st.lists(st.floats(-1, 1, allow_nan=False), min_size=1, max_size=3),
              st.lists(st.text(alphabet="pq", min_size=1, max_size=2), min_size=1, max_size=3)),
    lambda inner: st.dictionaries(_names, inner, min_size=1, max_size=3),
    max_leaves=8,
)
_features = st.dictionaries(_names, _values, max_size=4)


@settings(max_examples=150, deadline=None)
@given(context=_features, action=_features)
def test_every_namespace_vw_parses_is_in_the_context_or_action_group(context: dict, action: dict) -> None:
    """Whatever names and nesting clients use, "-q ca" crosses all of the context with all of the action."""
    text = build_context(feature_namespaces([context], "c", CONTEXT_INDEX),
                         [("x", feature_namespaces([action], "a", ACTION_INDEX))], action_id="cross")
    workspace = vw.Workspace(["--cb_explore_adf", "--quiet"])
    shared, item = vw.DSJsonFormatParser(workspace).parse_json(json.dumps({"c": json.loads(text)}))
    assert {chr(i) for i in shared.feat_group_indices} <= {"c"}
    assert {chr(i) for i in item.feat_group_indices} == {"a"}


@pytest.mark.parametrize(("mode", "described", "bare"), [
    ("auto", None, "a_ActionId"), ("cross", "a_ActionId", "a_ActionId"), ("bias", "ActionId", "ActionId"),
    ("off", None, None),
])
def test_action_id_is_crossed_with_the_context_only_where_the_mode_says(mode: str, described: str | None,
                                                                          bare: str | None) -> None:
    text = build_context({"c_user": {"tier": "gold"}}, [("x", {"a_item": {"genre": "jazz"}}), ("y", {})], action_id=mode)
    first, second = json.loads(text)["_multi"]
    assert (first.get(described) if described else None) == ({"id": "x"} if described else None)
    assert set(first) - {"a_item"} == ({described} if described else set())
    assert set(second) == ({bare} if bare else set())  # a featureless action: only its id can carry effects


_lists = st.lists(st.one_of(_features, st.dictionaries(_names, _scalars, max_size=3),
                            st.dictionaries(st.sampled_from(["_x", "", "ActionId", "user", "tags"]), _values, max_size=2),
                            st.just({"user": {"n": float("inf")}}), st.just({"user": {"s": "x" * 5000}}), st.integers()),
                  max_size=4)


@settings(max_examples=300, deadline=None)
@given(features=st.one_of(_lists, st.none(), _features))
def test_the_one_pass_path_agrees_with_the_careful_one(features: object) -> None:
    """feature_namespaces takes a shortcut for the usual lists: same namespaces, same errors, as merging first."""
    try:
        expected: object = _namespaces(merge_feature_list(features, "f"), ACTION_INDEX)
    except FeatureError as error:
        expected = (error.target, error.message)
    try:
        got: object = feature_namespaces(features, "f", ACTION_INDEX)
    except FeatureError as error:
        got = (error.target, error.message)
    assert got == expected


def test_strings_of_an_array_may_not_start_with_an_underscore() -> None:
    """They become feature names, and VW's JSON parser fails on '_' names (found by schemathesis)."""
    from personalize.features import ACTION_INDEX, FeatureError, feature_namespaces

    with pytest.raises(FeatureError):
        feature_namespaces([{"x": {"tags": ["ok", "_b"]}}], "features", ACTION_INDEX)
