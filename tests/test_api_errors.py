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
