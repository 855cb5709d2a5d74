"""Rank limits: feature entries and crossed features, counted as VW forms them, refused above the settings."""

import json
from typing import Any

import numpy as np
import orjson
import pytest
import vowpal_wabbit_next as vw
from hypothesis import given, settings
from hypothesis import strategies as st

from personalize.features import (ACTION_INDEX, CONTEXT_INDEX, FeatureBudget, counted_namespaces, feature_namespaces,
                                  vw_feature_count)
from personalize.limits import Interactions, RankLimits

from test_features import _features

RANK = "/personalizer/v1.0/rank"


def _names(prefix: str, n: int) -> dict[str, float]:
    return {f"{prefix}{i}": 1.5 for i in range(n)}


def _weights_touched(args: list[str], shared: dict[str, Any], action: dict[str, Any]) -> int:
    """Distinct weights one VW update touches: one per feature of the (single) action's example."""
    workspace = vw.Workspace(["--cb_explore_adf", "--quiet", "-b", "24", "--noconstant", *args])
    line = orjson.dumps({"_label_cost": -1.0, "_label_probability": 1.0, "_label_Action": 1, "_labelIndex": 0,
                         "a": [1], "p": [1.0], "c": {**shared, "_multi": [action]}}).decode()
    workspace.learn_one(vw.DSJsonFormatParser(workspace).parse_json(line))
    weights = workspace.weights()
    return int(np.count_nonzero(np.any(weights != 0, axis=tuple(range(1, weights.ndim)))))


@pytest.mark.parametrize("args", [
    ["-q", "ca"], ["-qca"], ["--quadratic=ca"], ["--interactions", "ca"], ["-q", "cc"], ["-q", "cc", "--permutations"],
    ["-q", "::"], ["-q", "::", "--permutations"], ["-q", "::", "--leave_duplicate_interactions"], ["-q", "c:"],
    ["--cubic", "ccc"], ["--cubic", "cac"], ["--cubic", "cac", "--permutations"], ["--cubic", ":::"],
    ["-q", "ca", "-q", "ac"], ["-q", "ca", "-q", "ac", "--leave_duplicate_interactions"], ["-q", "ca", "-q", "::"],
    ["--interactions", "aca"], ["--interactions", "cccc"], ["--interactions", "\\x63a"], [],
])
@pytest.mark.parametrize(("context", "action"), [
    ({"c_u": _names("u", 3)}, {"a_i": _names("i", 4)}),
    ({"c_u": _names("u", 2), "c": _names("z", 2)}, {"a_i": _names("i", 3), "ActionId": {"id": "x"}}),
])
def test_crossed_features_are_counted_as_vw_forms_them(args: list[str], context: dict, action: dict) -> None:
    """Checked against VW itself: the weights one update touches are the example's linear plus crossed features."""
    counts: dict[str, int] = {}
    for name, namespace in [*context.items(), *action.items()]:
        counts[name[0]] = counts.get(name[0], 0) + len(namespace)
    linear = sum(counts.values())
    assert Interactions.from_vw_args(args).crossed(counts) == _weights_touched(args, context, action) - linear


def test_the_policy_options_are_read_in_every_form() -> None:
    assert Interactions.from_vw_args("--cb_explore_adf -q ca --quiet --cubic=cca -qaa".split()).terms == ("ca", "cca", "aa")
    assert Interactions.from_vw_args(["--quiet"]).terms == ()


@settings(max_examples=150, deadline=None)
@given(features=_features, zeros=st.dictionaries(st.sampled_from(["z", "n", "f"]),
                                                 st.sampled_from([0, 0.0, None, False, 1e-300, -1e-46]), max_size=3))
def test_feature_counts_match_vw(features: dict, zeros: dict) -> None:
    """vw_feature_count is what VW's parser makes of the namespaces; the one-pass count is at least that."""
    feature_list = [features, {"flat": zeros}] if zeros else [features]
    try:
        namespaces, bound = counted_namespaces(feature_list, "f", CONTEXT_INDEX, FeatureBudget(10**9))
    except Exception:  # invalid features: test_features covers the errors
        return
    workspace = vw.Workspace(["--cb_explore_adf", "--quiet"])
    shared, _ = vw.DSJsonFormatParser(workspace).parse_json(json.dumps({"c": {**namespaces, "_multi": [{"a": {"x": 1}}]}}))
    in_vw = sum(len(shared[i].values) for i in shared.feat_group_indices)
    assert vw_feature_count(namespaces) == in_vw
    assert bound >= in_vw


@given(features=_features)
@settings(max_examples=100, deadline=None)
def test_entries_are_charged_the_same_on_both_paths(features: dict) -> None:
    """Every name and array element is one entry, whether a list takes the one-pass or the careful path."""
    lists = [[features], [features, {"ZZZZZZZ": [1.0]}]]  # an array feature always takes the careful path
    for feature_list in lists:
        budget = FeatureBudget(10**9)
        try:
            counted_namespaces(feature_list, "f", ACTION_INDEX, budget)
        except Exception:  # invalid features: test_features covers the errors
            return
        assert budget.used == _entries(feature_list)


def _entries(value: Any) -> int:
    if isinstance(value, dict):
        return len(value) + sum(_entries(v) for v in value.values())
    if isinstance(value, list):
        return len(value) + sum(_entries(v) for v in value)
    return 0


def test_a_feature_list_over_the_budget_stops_at_the_limit() -> None:
    """The walk is charged before it visits: what comes after the limit is never looked at (its error is not seen)."""
    budget = FeatureBudget(100)
    features = [{"user": _names("u", 150)}, {"bad": {"x": float("nan")}}]
    with pytest.raises(Exception) as error:
        counted_namespaces(features, "contextFeatures", CONTEXT_INDEX, budget)
    assert error.value.code == "TooManyFeatures"  # type: ignore[attr-defined]
    assert error.value.target == "contextFeatures[0].user"  # type: ignore[attr-defined]
    assert budget.used <= 100 + 150


def _rank_body(context: int, actions: int, per_action: int) -> dict[str, Any]:
    return {"contextFeatures": [{"user": {f"u{i}": f"v{i}" for i in range(context)}}],
            "actions": [{"id": f"a{k}", "features": [{"item": {f"f{j}": j + 1 for j in range(per_action)}}]}
                        for k in range(actions)]}


def test_rank_over_max_features_is_a_400_naming_the_setting(make_app: Any) -> None:
    # enrich_context off: the counts here are the client's alone (tests/test_enrichment.py counts the plugins' too)
    client = make_app(start=False, max_features=102, enrich_context=False).test_client()
    assert client.post(RANK, json=_rank_body(40, 5, 10)).status_code == 201  # (1 + 1 + 40) + 5 x (1 + 1 + 10) = 102
    response = client.post(RANK, json=_rank_body(41, 5, 10))
    assert response.status_code == 400
    error = response.json["error"]
    assert error["code"] == "TooManyFeatures" and error["target"].startswith("actions[")
    assert error["target"] == "actions[4].features[0].item"
    assert "at most 102" in error["message"] and "PERSONALIZE_MAX_FEATURES" in error["message"]


def test_rank_over_max_crossed_features_is_a_400_with_the_exact_count(make_app: Any) -> None:
    client = make_app(start=False, max_crossed_features=1000, enrich_context=False).test_client()  # the client's alone
    assert client.post(RANK, json=_rank_body(10, 10, 10)).status_code == 201  # 10 x 10 x 10 = 1000 crossed
    response = client.post(RANK, json=_rank_body(11, 10, 10))
    assert response.status_code == 400
    error = response.json["error"]
    assert error["code"] == "TooManyCrossedFeatures" and error["target"] == "contextFeatures"
    assert "1100 crossed" in error["message"] and "PERSONALIZE_MAX_CROSSED_FEATURES" in error["message"]
    body = _rank_body(11, 10, 10)
    body["excludedActions"] = ["a0"]  # excluded actions are not sent to VW: 11 x 9 x 10 = 990
    assert client.post(RANK, json=body).status_code == 201


def test_zero_valued_features_cross_nothing_and_are_recounted(make_app: Any) -> None:
    """The one-pass bound counts zeros; over the limit, the exact count decides."""
    client = make_app(start=False, max_crossed_features=100).test_client()
    body = _rank_body(10, 1, 0)
    body["actions"] = [{"id": "a", "features": [{"item": {"on": 1, **{f"z{j}": 0 for j in range(20)}}}]}]
    assert client.post(RANK, json=body).status_code == 201  # bound 10 x 21 = 210, exactly 10 x 1 = 10


def test_action_ids_and_policies_count(make_app: Any) -> None:
    """Bare actions cross their id with the context (action_id_feature auto); a policy with -q cc counts c x c."""
    client = make_app(start=False, max_crossed_features=99).test_client()
    bare = {"contextFeatures": [{"user": {f"u{i}": 1 for i in range(10)}}], "actions": [{"id": f"a{k}"} for k in range(10)]}
    assert client.post(RANK, json=bare).json["error"]["code"] == "TooManyCrossedFeatures"  # 10 x 10 x 1 = 100
    client = make_app(start=False, max_crossed_features=99, action_id_feature="off").test_client()
    assert client.post(RANK, json=bare).status_code == 201
    client = make_app(start=False, max_crossed_features=54, learning_policy="--cb_explore_adf -q cc",
                      action_id_feature="off").test_client()
    one = {"contextFeatures": [{"user": {f"u{i}": 1 for i in range(10)}}], "actions": [{"id": "a"}]}
    assert client.post(RANK, json=one).json["error"]["code"] == "TooManyCrossedFeatures"  # 10 x 11 / 2 = 55


def test_the_limits_hold_for_generated_candidates(make_app: Any) -> None:
    """Rank by userId counts the catalog features of its candidates."""
    client = make_app(start=False, max_features=200, generator_refresh_interval=0).test_client()
    items = [{"id": f"m{i}", "features": {"tags": [f"t{j}" for j in range(30)]}} for i in range(10)]
    assert client.post("/personalizer/v1.0/catalog/items", json={"items": items}).status_code == 200
    assert client.post(RANK, json={"userId": "u", "numCandidates": 2}).status_code == 201
    response = client.post(RANK, json={"userId": "u", "numCandidates": 10})
    assert response.status_code == 400
    assert response.json["error"]["code"] == "TooManyFeatures"
    assert response.json["error"]["target"].startswith("candidates[")


def test_settings_bounds() -> None:
    from personalize.config import Settings, SettingsError

    assert Settings().max_features == 5000 and Settings().max_crossed_features == 1_000_000
    with pytest.raises(SettingsError, match="max_features"):
        Settings(max_features=0).validate()
    with pytest.raises(SettingsError, match="max_crossed_features"):
        Settings(max_crossed_features=-1).validate()


def test_the_benchmark_request_is_far_inside_the_defaults() -> None:
    import importlib.util
    from pathlib import Path

    from personalize.api.schemas import RequestSchemas
    from personalize.config import Settings
    from personalize.service import parse_rank_request

    spec = importlib.util.spec_from_file_location("bench_service", Path(__file__).parents[1] / "bench" / "service.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    settings_ = Settings()
    request = parse_rank_request(orjson.loads(bench.rank_body()), RequestSchemas(settings_), settings_.max_features)
    crossed = RankLimits.from_settings(settings_).crossed(request.context, request.actions)
    assert crossed == 3 * (50 * 10 - 1)  # the first action has one zero-valued feature
    assert request.budget.used * 5 < settings_.max_features and crossed * 100 < settings_.max_crossed_features


def test_policy_options_the_count_does_not_cover_are_named_in_a_warning(caplog: Any) -> None:
    from personalize.config import Settings

    with caplog.at_level("WARNING", logger="personalize.limits"):
        RankLimits.from_settings(Settings(learning_policy="--cb_explore_adf -q ca --lrq ca2"))
    assert "--lrq" in caplog.text and "max_crossed_features" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="personalize.limits"):
        RankLimits.from_settings(Settings())
    assert not caplog.text
