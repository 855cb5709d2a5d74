"""Bad input gets a JSON error naming the field and the fix, never a 500."""

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

RANK = "/personalizer/v1.0/rank"
ACTIONS = [{"id": "a", "features": [{"x": {"v": 1}}]}, {"id": "b"}]


def assert_error(response: Any, status: int, target: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.data
    error = response.json["error"]
    assert error["code"] and error["message"]
    if target is not None:
        assert error.get("target") == target, error
    return error


@pytest.mark.parametrize(
    ("body", "target"),
    [
        ({}, "actions"),
        ({"actions": []}, "actions"),
        ({"actions": "a"}, "actions"),
        ({"actions": [{"id": "a"}, {"id": "a"}]}, "actions[1].id"),
        ({"actions": [{"id": ""}]}, "actions[0].id"),
        ({"actions": [{"id": 5}]}, "actions[0].id"),
        ({"actions": [{"id": "a", "features": "x"}]}, "actions[0].features"),
        ({"actions": [{"id": "a", "features": [{"p": [1, "x"]}]}]}, "actions[0].features[0].p"),
        ({"actions": ACTIONS, "excludedActions": ["a", "b"]}, "excludedActions"),
        ({"actions": ACTIONS, "excludedActions": ["zzz"]}, "excludedActions[0]"),
        ({"actions": ACTIONS, "contextFeatures": [{"u": {"_x": 1}}]}, "contextFeatures[0].u._x"),
        ({"actions": ACTIONS, "deferActivation": "yes"}, "deferActivation"),
        ({"actions": ACTIONS, "eventId": "x" * 300}, "eventId"),
        ({"actions": [{"id": str(i)} for i in range(51)]}, "actions"),
        ({"actions": ACTIONS, "contextFeature": [{"u": {"a": 1}}]}, "contextFeature"),  # misspelled: never ignored
        ({"actions": [{"id": "a", "feature": [{"x": {"v": 1}}]}]}, "actions[0].feature"),
        ({"actions": ACTIONS, "numCandidates": 5}, "numCandidates"),  # only for generated candidates
        ({"actions": ACTIONS, "generators": ["popular"]}, "generators"),
        ({"actions": ACTIONS, "excludedActions": {}}, "excludedActions"),
        ({"actions": ACTIONS, "excludedActions": ""}, "excludedActions"),
        ({"actions": ACTIONS, "excludedActions": 0}, "excludedActions"),
        ({"actions": ACTIONS, "eventId": ""}, "eventId"),
        ({"actions": ACTIONS, "eventId": ".."}, "eventId"),  # clients rewrite dot segments in URLs
        ({"actions": ACTIONS, "eventId": "a/./b"}, "eventId"),
        # beyond MAX_MAGNITUDE VW's float32 updates overflow into a NaN model
        ({"actions": ACTIONS, "contextFeatures": [{"u": {"x": 1e20}}]}, "contextFeatures[0].u.x"),
        ({"actions": ACTIONS, "contextFeatures": [{"x": -2**62}]}, "contextFeatures[0].x"),
        ({"actions": [{"id": "a", "features": [{"p": [1, 3e8]}]}]}, "actions[0].features[0].p[1]"),
        # strings of an array become feature names: VW's parser fails on names starting with '_' (schemathesis)
        ({"actions": [{"id": "a", "features": [{"x": {"tags": ["ok", "_b"]}}]}]}, "actions[0].features[0].x.tags"),
    ],
)
def test_bad_rank_requests(client: Any, body: dict[str, Any], target: str) -> None:
    assert_error(client.post(RANK, json=body), 400, target)


def test_malformed_and_non_finite_json(client: Any) -> None:
    assert_error(client.post(RANK, data="{not json", content_type="application/json"), 400)
    assert_error(client.post(RANK, data='{"actions": [{"id": "a", "features": [{"x": NaN}]}]}', content_type="application/json"), 400)
    assert_error(client.post(RANK, data="", content_type="application/json"), 400)
    assert_error(client.post(RANK, data="[1, 2]", content_type="application/json"), 400)


def test_reused_event_id_is_a_conflict(client: Any) -> None:
    assert client.post(RANK, json={"actions": ACTIONS, "eventId": "dup"}).status_code == 201
    assert_error(client.post(RANK, json={"actions": ACTIONS, "eventId": "dup"}), 409, "eventId")


def test_body_over_the_limit_is_413(make_app: Any) -> None:
    client = make_app(max_body_bytes=1000).test_client()
    body = {"actions": [{"id": str(i), "features": [{"x": {"t": "y" * 100}}]} for i in range(20)]}
    assert_error(client.post(RANK, json=body), 413)


@pytest.mark.parametrize("value", [None, "1", True, [1], 2.0, -1.5, 1e309])
def test_bad_reward_values(client: Any, value: Any) -> None:
    event_id = client.post(RANK, json={"actions": ACTIONS}).json["eventId"]
    response = client.post(f"/personalizer/v1.0/events/{event_id}/reward", data=json.dumps({"value": value}), content_type="application/json")
    assert_error(response, 400)
    assert_error(client.post(f"/personalizer/v1.0/events/{event_id}/reward", data='{"value": Infinity}', content_type="application/json"), 400)


def test_unknown_url_and_method_are_json(client: Any) -> None:
    assert_error(client.get("/personalizer/v1.0/nope"), 404)
    assert_error(client.get(RANK), 405)


@pytest.mark.parametrize("method, path", [
    ("GET", "/personalizer/v1.0/nope"),
    ("POST", "/personalizer/v1.0/ranking"),
    ("POST", "/personalizer/rnk"),  # the preview SDK's prefix
    ("DELETE", "/personalizer/v1.0/catalog"),
])
def test_an_unknown_operation_under_the_prefix_is_named_not_blamed_on_the_prefix(make_app: Any, method: str, path: str) -> None:
    error = assert_error(make_app(start=False).test_client().open(path, method=method), 404)
    assert error["message"].startswith(f"There is no operation {method} {path};"), error
    assert "docs/api.md" in error["message"] and "/openapi.json" in error["message"]
    assert "prefix" not in error["message"]


@pytest.mark.parametrize("path", ["/rank", "/v1.0/rank", "/personaliser/v1.0/rank", "/"])
def test_a_path_outside_the_prefix_says_to_check_the_prefix(make_app: Any, path: str) -> None:
    error = assert_error(make_app(start=False).test_client().post(path, json={}), 404)
    assert error["message"].startswith(f"{path} is not under the API's prefix"), error
    assert "/personalizer/v1.0/" in error["message"]


def _assert_no_content(response: Any) -> None:
    assert response.status_code == 204, response.data
    assert response.data == b""
    assert "Content-Type" not in response.headers and "Content-Length" not in response.headers, dict(response.headers)


def test_204_answers_carry_no_body_and_no_content_type(make_app: Any) -> None:
    client = make_app(start=False).test_client()
    event_id = client.post(RANK, json={"actions": ACTIONS}).json["eventId"]
    _assert_no_content(client.post(f"/personalizer/v1.0/events/{event_id}/reward", json={"value": 1.0}))
    deferred = client.post(RANK, json={"actions": ACTIONS, "deferActivation": True}).json["eventId"]
    _assert_no_content(client.post(f"/personalizer/v1.0/events/{deferred}/activate"))
    assert client.put("/personalizer/v1.0/catalog/items/m1", json={"features": {"genre": "x"}}).status_code == 201
    _assert_no_content(client.delete("/personalizer/v1.0/catalog/items/m1"))
    assert client.get("/personalizer/v1.0/health").headers["Content-Type"] == "application/json"  # others keep theirs


def test_204_over_http_has_no_content_type(live_server: str) -> None:
    import requests

    event_id = requests.post(live_server + RANK, json={"actions": ACTIONS}, timeout=10).json()["eventId"]
    response = requests.post(f"{live_server}/personalizer/v1.0/events/{event_id}/reward", json={"value": 1.0}, timeout=10)
    assert response.status_code == 204 and response.content == b""
    assert "Content-Type" not in response.headers and "Content-Length" not in response.headers, dict(response.headers)
    assert "Transfer-Encoding" not in response.headers


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
junk_bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({}, optional={
        "actions": json_values, "contextFeatures": json_values, "excludedActions": json_values,
        "eventId": json_values, "deferActivation": json_values,
    }),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=junk_bodies, raw=st.binary(max_size=50))
def test_generated_junk_never_causes_a_500(make_app: Any, body: Any, raw: bytes) -> None:
    if not hasattr(test_generated_junk_never_causes_a_500, "client"):
        test_generated_junk_never_causes_a_500.client = make_app(start=False).test_client()  # type: ignore[attr-defined]
    client = test_generated_junk_never_causes_a_500.client  # type: ignore[attr-defined]
    for response in (
        client.post(RANK, data=json.dumps(body), content_type="application/json"),
        client.post(RANK, data=raw, content_type="application/json"),
        client.post("/personalizer/v1.0/events/x/reward", data=json.dumps(body), content_type="application/json"),
    ):
        assert response.status_code < 500, response.data
        if response.status_code >= 400:
            assert response.json["error"]["message"]


def test_reward_body_with_unknown_fields_is_refused(client: Any) -> None:
    event_id = client.post(RANK, json={"actions": ACTIONS}).json["eventId"]
    url = f"/personalizer/v1.0/events/{event_id}/reward"
    assert_error(client.post(url, json={"value": 0.5, "vaule": 1}), 400, "vaule")
    assert client.post(url, json={"value": 0.5}).status_code == 204


def test_excluded_actions_null_means_none(client: Any) -> None:
    assert client.post(RANK, json={"actions": ACTIONS, "excludedActions": None}).status_code == 201


def test_a_chunked_body_over_the_limit_is_413_not_cut(make_app: Any) -> None:
    """Without Content-Length the body is read up to the limit; what follows must not be dropped."""
    import io

    limit = 1000
    client = make_app(max_body_bytes=limit).test_client()
    valid = json.dumps({"actions": [{"id": "a"}], "eventId": "e" * 10}).encode()
    padded = valid + b" " * (limit - len(valid))  # exactly the limit: accepted
    for body, status in ((padded, 201), (padded + b"TRAILING GARBAGE", 413)):
        response = client.post(RANK, input_stream=io.BytesIO(body), content_type="application/json",
                               headers={"Transfer-Encoding": "chunked"}, environ_overrides={"wsgi.input_terminated": True})
        assert response.status_code == status, response.data
        if status == 413:
            assert_error(response, 413)
        else:
            client.post(f"/personalizer/v1.0/events/{'e' * 10}/reward", json={"value": 1})


def test_the_largest_accepted_feature_values_learn_into_a_finite_model(make_app: Any) -> None:
    import numpy as np
    import vowpal_wabbit_next as vw

    from personalize.features import MAX_MAGNITUDE

    app = make_app(start=False)
    client, service = app.test_client(), app.extensions["personalize"]
    for i in range(200):
        actions = [{"id": "a", "features": [{"x": {"v": MAX_MAGNITUDE}}]}, {"id": "b", "features": [{"x": {"v": -MAX_MAGNITUDE}}]}]
        body = {"contextFeatures": [{"u": {"x": MAX_MAGNITUDE * (i % 3 - 1)}}], "actions": actions}
        event_id = client.post(RANK, json=body).json["eventId"]
        assert client.post(f"/personalizer/v1.0/events/{event_id}/reward", json={"value": 1.0 if i % 2 else -1.0}).status_code == 204
    service.learner.step()
    model = vw.Workspace(["--quiet"], model_data=service.learner._model.serialize())
    assert np.isfinite(model.weights()).all()


#: Where a deeply nested value goes: (method, URL, body template with {} for the value).
_DEEP_PLACES = [
    ("PUT", "/personalizer/v1.0/catalog/items/x", '{"features": %s}'),
    ("PUT", "/personalizer/v1.0/catalog/items/x", '{"features": {"a": %s}}'),
    ("PUT", "/personalizer/v1.0/catalog/items/x", '{"a": %s}'),
    ("PUT", "/personalizer/v1.0/catalog/items/x", '{"id": %s}'),
    ("PUT", "/personalizer/v1.0/catalog/items/x", '{"createdAt": %s}'),
    ("PUT", "/personalizer/v1.0/catalog/items/x", '{"active": %s}'),
    ("POST", "/personalizer/v1.0/catalog/items", '{"items": [{"id": "x", "features": {"a": %s}}]}'),
    ("POST", "/personalizer/v1.0/catalog/items", '{"items": [%s]}'),
    ("POST", "/personalizer/v1.0/interactions", '{"interactions": [{"userId": "u", "itemId": "x", "value": %s}]}'),
    ("POST", "/personalizer/v1.0/interactions", '{"interactions": [{"userId": "u", "itemId": "x", "timestamp": %s}]}'),
    ("POST", "/personalizer/v1.0/interactions", '{"interactions": [{"userId": %s, "itemId": "x"}]}'),
    ("POST", "/personalizer/v1.0/generators/train", '{"generators": %s}'),
    ("POST", RANK, '{"contextFeatures": [{"a": %s}], "actions": [{"id": "a"}]}'),
    ("POST", RANK, '{"contextFeatures": %s, "actions": [{"id": "a"}]}'),
    ("POST", RANK, '{"actions": [{"id": "a", "features": [{"x": %s}]}]}'),
    ("POST", RANK, '{"actions": [{"id": %s}]}'),
    ("POST", RANK, '{"userId": "u", "generators": %s}'),
    ("POST", "/personalizer/v1.0/events/e/reward", '{"value": %s}'),
    ("POST", RANK, "%s"),
]


def _nested(kinds: list[str], leaf: str) -> str:
    """JSON text nesting ``leaf`` in arrays and objects, outermost first (built as text: json.dumps recurses)."""
    text = leaf
    for kind in reversed(kinds):
        text = f"[{text}]" if kind == "array" else f'{{"k": {text}}}'
    return text


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kinds=st.one_of(st.lists(st.sampled_from(["array", "object"]), min_size=1, max_size=30),
                       st.integers(900, 1100).flatmap(lambda n: st.lists(st.sampled_from(["array", "object"]),
                                                                         min_size=n, max_size=n))),
       leaf=st.sampled_from(["1", '"x"', "null", "[]", "{}"]), place=st.sampled_from(_DEEP_PLACES))
def test_deeply_nested_values_are_a_400_naming_the_field(make_app: Any, kinds: list[str], leaf: str,
                                                          place: tuple[str, str, str]) -> None:
    """Arrays and objects nested up to ~1,000 deep anywhere (a RecursionError 500 in catalog fields before)."""
    method, url, template = place
    client = _app_for(make_app).test_client()
    response = client.open(url, method=method, data=template % _nested(kinds, leaf), content_type="application/json")
    assert response.status_code in (200, 201, 400, 404, 422), response.data
    if response.status_code >= 400:
        assert response.json["error"]["code"] and response.json["error"]["message"]
    if len(kinds) > 1024:  # orjson refuses deeper JSON itself: a 400 that says so
        assert response.json["error"]["code"] == "InvalidJson" and "depth" in response.json["error"]["message"]


def test_catalog_rows_nest_at_most_max_nesting_levels(client: Any) -> None:
    from personalize.catalog import MAX_NESTING

    deep = _nested(["array"] * MAX_NESTING, "1")
    response = client.put("/personalizer/v1.0/catalog/items/x", data='{"features": {"a": %s}}' % deep,
                          content_type="application/json")
    # The API's schema wants item feature values flat (a scalar or a list of scalars) and says so first;
    # the catalog parser's MAX_NESTING bound (tests/test_catalog.py) guards `personalize import` too.
    error = assert_error(response, 400, "features.a")
    assert "flat" in error["message"]
    response = client.post("/personalizer/v1.0/interactions", data='{"interactions": [{"userId": "u", "itemId": "x", '
                           '"value": %s}]}' % _nested(["object"] * 1000, "1"), content_type="application/json")
    error = assert_error(response, 400)
    assert error["target"].startswith("interactions[0].value.k.k")
    assert "value.k.k" in error["message"] and f"{MAX_NESTING} levels" in error["message"]


_DEEP_APPS: dict[int, Any] = {}


def _app_for(make_app: Any) -> Any:
    """One app per run of the property (hypothesis calls the test body many times per fixture)."""
    if id(make_app) not in _DEEP_APPS:
        _DEEP_APPS.clear()
        _DEEP_APPS[id(make_app)] = make_app(start=False, generator_refresh_interval=0)
    return _DEEP_APPS[id(make_app)]


def test_activate_refuses_a_body_instead_of_ignoring_it(client: Any) -> None:
    client.post("/personalizer/v1.0/rank", json={"eventId": "deferred", "deferActivation": True,
                                                  "actions": [{"id": "a"}, {"id": "b"}]})
    assert_error(client.post("/personalizer/v1.0/events/deferred/activate", json={"value": 1}), 400)
    assert client.post("/personalizer/v1.0/events/deferred/activate").status_code == 204


@pytest.mark.parametrize("item_id", [".", ".."])
def test_item_ids_that_are_path_segments_are_refused(client: Any, item_id: str) -> None:
    response = client.post("/personalizer/v1.0/catalog/items", json={"items": [{"id": item_id, "features": {"a": 1}}]})
    assert_error(response, 400)
    put = client.put("/personalizer/v1.0/catalog/items/%2E%2E" if item_id == ".." else "/personalizer/v1.0/catalog/items/%2E",
                     json={"features": {"a": 1}})
    assert put.status_code in (400, 404), put.data  # never stored under an id no client can read back


@pytest.mark.parametrize("user_id", [" u", "u ", "\tu"])
def test_rank_user_ids_follow_the_interactions_rule(client: Any, user_id: str) -> None:
    """An interactions' userId with edge whitespace is refused, so a Rank for one could never be personal."""
    assert_error(client.post("/personalizer/v1.0/rank", json={"userId": user_id}), 400, "userId")
    assert_error(client.post("/personalizer/v1.0/interactions",
                             json={"interactions": [{"userId": user_id, "itemId": "x"}]}), 400)


def test_empty_strings_in_feature_arrays_are_refused_not_dropped(client: Any) -> None:
    ranked = client.post("/personalizer/v1.0/rank", json={"actions": [{"id": "a", "features": [{"ns": ["", "x"]}]}]})
    assert_error(ranked, 400)
    assert_error(client.put("/personalizer/v1.0/catalog/items/f7", json={"features": {"g": [""]}}), 400)


def test_paths_that_are_not_utf8_are_refused_not_merged(live_server: str) -> None:
    """Werkzeug would decode each bad byte to U+FFFD: caf%e9 and caf%ff would be the same item. Real HTTP:
    the test client decodes the path before the app sees it."""
    import http.client
    from urllib.parse import urlsplit

    where = urlsplit(live_server)
    body, headers = b'{"features": {"a": 1}}', {"Content-Type": "application/json"}
    for method, path in (("PUT", "/personalizer/v1.0/catalog/items/caf%e9"), ("POST", "/personalizer/v1.0/events/%ff%fe/reward"),
                         ("PUT", "/personalizer/v1.0/catalog/items/caf%C3%A9")):
        connection = http.client.HTTPConnection(where.hostname, where.port, timeout=10)
        connection.request(method, path, body=body if method == "PUT" else b'{"value": 1}', headers=headers)
        response = connection.getresponse()
        answer = json.loads(response.read())
        connection.close()
        if path.endswith("%C3%A9"):
            assert response.status == 201, answer  # valid UTF-8 is stored
        else:
            assert response.status == 400 and "not UTF-8" in answer["error"]["message"], answer
