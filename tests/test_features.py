"""Personalizer feature JSON -> VW: validation and the exact mapping VW's parser sees."""

import json

import pytest
import vowpal_wabbit_next as vw

from personalize.features import ACTION_ID_NAMESPACE, FeatureError, build_context, merge_feature_list


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
    context = merge_feature_list([{"user": {"age": 30, "tier": "gold"}}, {"flag": True}], "c")
    actions = [("a", merge_feature_list([{"item": {"price": 3.5, "tags": ["x"]}}], "a")), ("b", {})]
    text = build_context(context, actions, action_id_feature=True)
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
