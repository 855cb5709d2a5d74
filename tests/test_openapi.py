"""The OpenAPI document against the live app: every route documented, and schemathesis over every operation.

Schemathesis generates requests from /openapi.json (valid ones and ones that break the schema)
and checks the answers: no 5xx, status codes, content types and bodies as documented, valid
data accepted and invalid data refused. The last two prove that the document and the request
validation do not drift: both come from personalize/api/schemas.py.
"""

from __future__ import annotations

import copy
import re
from urllib.parse import unquote
from typing import Any, Iterator

import jsonschema_rs
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import FlakyStrategyDefinition
from hypothesis import strategies as st
from schemathesis.checks import load_all_checks, not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance, negative_data_rejection, positive_data_acceptance, response_schema_conformance,
    status_code_conformance,
)

from personalize.api.schemas import OPERATIONS, openapi_document
from personalize.config import load_settings
from personalize.features import ACTION_INDEX, MAX_DEPTH, FeatureError, feature_namespaces
from personalize.vw import Model
from tests.conftest import LiveServer

load_all_checks()

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          positive_data_acceptance, negative_data_rejection]
MAX_EXAMPLES = 25

CONFIG = schemathesis.Config.from_dict({
    "generation": {"mode": "all", "max-examples": MAX_EXAMPLES},
    # The coverage phase's boundary cases include bulk calls of 10,000 rows and 4096-character strings
    # everywhere: minutes per operation on 2 cores. Examples and fuzzing keep the run bounded.
    "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": True}},
    "checks": {
        # 422 is this API's answer to a well-formed call the server's state cannot serve (no generators
        # enabled, an unknown generator name, no catalog to propose from): like 404 and 409, not bad data.
        "positive_data_acceptance": {"expected-statuses": ["2xx", "404", "409", "422"]},
        # Invalid data is refused: with a 4xx naming the field, or a 413 when it is also over max_body_bytes.
        "negative_data_rejection": {"expected-statuses": ["400", "404", "405", "409", "413", "415", "422"]},
        # The test server runs without keys (the open mode of a loopback server); keys are tested elsewhere.
        "ignored_auth": {"enabled": False},
        # DELETE /catalog/items/{id} deactivates the item (history keeps pointing at it); GET still shows it,
        # with "active": false, by design (docs/api.md).
        "use_after_free": {"enabled": False},
    },
})


#: The document schemathesis generates from: the one a server with default settings serves
#: (test_the_served_document_is_the_tested_one).
DOCUMENT = openapi_document(load_settings({}, env={}))
schema = schemathesis.openapi.from_dict(copy.deepcopy(DOCUMENT), config=CONFIG)  # it resolves in place


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`personalize serve` (gunicorn, real HTTP) on a fresh SQLite data dir, for every operation's examples."""
    live = LiveServer(tmp_path_factory.mktemp("openapi")).start()
    yield live.url
    live.stop()


@pytest.fixture
def live_app(make_app: Any) -> Any:
    return make_app(start=False)


def _follow_worded_rules(body: Any) -> None:
    """Rules the schema states in words only: unique action ids, excludedActions among them with one left,
    no feature given twice in one list, no item key both in the row and in features, sessionItems name
    catalog items (the test server's catalog is whatever earlier cases stored: none are sent), a top-level
    timeZone feature is an IANA name; multi-slot: unique slot ids, no more slots than actions, each slot's
    baselineAction an action of its own that it does not exclude."""
    if not isinstance(body, dict):
        return
    if "sessionItems" in body:
        del body["sessionItems"]
        if "actions" not in body and "userId" not in body:
            body["userId"] = "visitor"
    features = body.get("contextFeatures")
    for obj in features if isinstance(features, list) else [features]:
        if isinstance(obj, dict) and "timeZone" in obj:
            obj["timeZone"] = "UTC"
    actions = body.get("actions")
    if isinstance(actions, list):
        _distinct_ids(actions)
        for action in actions:
            if isinstance(action, dict):
                _distinct_features(action.get("features"))
        excluded = body.get("excludedActions")
        if isinstance(excluded, list) and all(isinstance(a, dict) and isinstance(a.get("id"), str) for a in actions):
            body["excludedActions"] = [a["id"] for a in actions[1:]][: len(excluded)]
    slots = body.get("slots")
    if isinstance(slots, list) and isinstance(actions, list):  # multi-slot: ids unique, a baseline of its own each
        ids = [a["id"] for a in actions if isinstance(a, dict) and isinstance(a.get("id"), str)]
        del slots[max(len(ids), 1):]
        _distinct_ids(slots)
        for i, slot in enumerate(slots):
            if isinstance(slot, dict) and i < len(ids):
                slot["baselineAction"] = ids[i]
                if isinstance(slot.get("excludedActions"), list):
                    slot["excludedActions"] = [a for a in ids if a != ids[i]][: len(slot["excludedActions"])]
                _distinct_features(slot.get("features"))
    _distinct_features(body.get("contextFeatures"))
    rows = body.get("items") if isinstance(body.get("items"), list) else [body]
    for row in rows:
        if isinstance(row, dict) and isinstance(row.get("features"), dict):
            for key in list(row["features"]):
                if key not in ("id", "features", "createdAt", "active"):
                    row.pop(key, None)
    if isinstance(body.get("items"), list):
        _distinct_ids(body["items"])


def _distinct_ids(rows: list[Any]) -> None:
    seen: set[str] = set()
    for i, row in enumerate(rows):
        if isinstance(row, dict) and isinstance(row.get("id"), str):
            if row["id"] in seen:
                row["id"] = f"dup{i}"
            seen.add(row["id"])


def _distinct_features(features: Any) -> None:
    if isinstance(features, list) and len(features) > 1:
        seen: set[str] = set()
        for obj in features:
            if isinstance(obj, dict):
                for key in [k for k in obj if k in seen]:
                    del obj[key]
                seen.update(obj)


#: A model of the test server's policy (the default): what a valid PUT /model sends.
_MODEL = Model(load_settings({}, env={}).vw_args).serialize()


def _follow_admin_rules(case: Any) -> None:
    """The administration operations' worded rules: a model file is a model of the running policy, signed=true
    needs a server signing key (the test server has none), logRetentionDays is -1 or at least the reward wait
    plus a day, and modelRetrainDays at most logRetentionDays."""
    path, method = case.operation.path, case.operation.method.upper()
    if path.endswith("/model") and method == "PUT":
        case.body = _MODEL
    if path.endswith("/model") and method == "GET" and case.query:
        case.query["signed"] = False
    if path.endswith("/configurations/service") and method == "PUT" and isinstance(case.body, dict):
        case.body["logRetentionDays"] = -1


@schema.hook
def map_case(context: Any, case: Any) -> Any:
    """Valid cases also follow the rules the schema states in words only."""
    if case.meta is None or case.meta.generation.mode.is_positive:
        _follow_worded_rules(case.body)
        _follow_admin_rules(case)
        if isinstance(case.body, dict) and "itemId" in (case.path_parameters or {}) and "id" in case.body:
            case.body["id"] = unquote(case.path_parameters["itemId"])
    return case


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_conforms(case: Any, server: str) -> None:
    map_case(None, case)  # the examples phase (the preview operations' api-version example) skips the schema hook
    case.call_and_validate(base_url=server, checks=CHECKS)


def test_rank_reward_activate_links(server: str) -> None:
    """Stateful: Rank's eventId feeds Reward and Activate through the document's links."""
    for prefix, suffix in (("/personalizer/v1.0", ""), ("/personalizer", "_Preview")):
        links = DOCUMENT["paths"][prefix + "/rank"]["post"]["responses"]["201"]["links"]
        assert {name: (link["operationId"], link["parameters"]) for name, link in links.items()} == {
            "Reward": ("Events_Reward" + suffix, {"eventId": "$response.body#/eventId"}),
            "Activate": ("Events_Activate" + suffix, {"eventId": "$response.body#/eventId"})}

    followed: list[int] = []

    # Only the operations the links join (Rank -> Reward/Activate): the admin operations (catalog, policy,
    # evaluations) would dilute the few steps a run takes, and the links never lead to them.
    linked = schema.include(tag=["Ranking", "Events"])

    class Machine(linked.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"base_url": server}

        def before_call(self, case: Any) -> None:
            map_case(None, case)  # the state machine's cases skip the schema hook: same worded rules here

        def after_call(self, response: Any, case: Any) -> None:
            super().after_call(response, case)
            if case.operation.path.endswith(("/reward", "/activate")) and response.status_code in (204, 409):
                followed.append(response.status_code)  # an eventId Rank answered (a made-up one is a 404)

    # Generate only: the links draw on the live server's answers, which a replay (shrinking) cannot repeat.
    # For the same reason Hypothesis may stop a run as flaky (its choices met a server in another state):
    # that ends the run, not the test; a failed check raises as usual.
    for _ in range(5):
        try:
            Machine.run(settings=settings(max_examples=15, stateful_step_count=6, deadline=None, phases=[Phase.generate],
                                          database=None, suppress_health_check=list(HealthCheck)))
        except FlakyStrategyDefinition:
            pass
        if len(followed) >= 3:
            break
    assert len(followed) >= 3, followed


def test_the_served_document_is_the_tested_one(server: str) -> None:
    assert requests.get(server + "/openapi.json", timeout=10).json() == DOCUMENT


def _openapi_path(rule: str) -> str:
    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule).replace("{event_id}", "{eventId}").replace("{item_id}", "{itemId}") \
        .replace("{user_id}", "{userId}").replace("{evaluation_id}", "{evaluationId}") \
        .replace("{feature_importance_id}", "{featureImportanceId}")


def test_every_route_is_documented_and_every_documented_operation_exists(live_app: Any) -> None:
    document = live_app.test_client().get("/openapi.json").json
    documented = {(path, method.upper()) for path, item in document["paths"].items() for method in item}
    routes = {(_openapi_path(rule.rule), method) for rule in live_app.url_map.iter_rules()
              for method in rule.methods - {"HEAD", "OPTIONS"} if rule.endpoint != "static"}
    assert routes == documented
    assert {op.operation_id for op in OPERATIONS} <= {o["operationId"] for item in document["paths"].values() for o in item.values()}
    # ...and each route is served by the view its operation names (the key check reads roles by that name)
    endpoint_of = {op.operation_id: op.endpoint for op in OPERATIONS}
    for rule in live_app.url_map.iter_rules():
        for method in rule.methods - {"HEAD", "OPTIONS"} if rule.endpoint != "static" else ():
            operation_id = document["paths"][_openapi_path(rule.rule)][method.lower()]["operationId"]
            assert endpoint_of[operation_id.removesuffix("_Preview").removesuffix("_Root")] == \
                rule.endpoint.replace("_preview.", "."), rule.rule


def test_the_document_is_served_under_both_paths(live_app: Any) -> None:
    client = live_app.test_client()
    assert client.get("/openapi.json").json == client.get("/personalizer/v1.0/openapi.json").json


# -- the FeatureList schema and personalize/features.py accept the same feature lists -----------------
_FEATURE_LIST = jsonschema_rs.Draft202012Validator(
    {"components": {"schemas": DOCUMENT["components"]["schemas"]}, "$ref": "#/components/schemas/FeatureList"})
_keys = st.sampled_from(["a", "b", "c", "é", "a b", "_x", "", "ActionId", "k" * 257])
_edges = st.sampled_from(["_s", "x" * 4096, "x" * 4097, 1e8, -1e8, 100_000_001, 1.2e8, -3e8, 10**20, 2**63])
_scalars = st.one_of(_edges, _edges, _edges, st.none(), st.booleans(), st.integers(-10, 10),
                     st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=3))
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=3),
                       max_leaves=12)
_feature_lists = st.none() | st.dictionaries(_keys, _values, max_size=3) | st.lists(
    st.dictionaries(_keys, _values, max_size=3) | _scalars, max_size=3)


def _features_accept(features: Any) -> bool:
    try:
        feature_namespaces(features, "features", ACTION_INDEX)
        return True
    except FeatureError:
        return False


def _merge_conflict(features: Any) -> bool:
    """A name in two objects of one list: features.py refuses what the schema cannot see."""
    if not isinstance(features, list):
        return False
    seen: set[str] = set()
    for obj in features:
        if isinstance(obj, dict):
            if seen & set(obj):
                return True
            seen.update(obj)
    return False


@settings(max_examples=1000, deadline=None)
@given(_feature_lists)
def test_features_py_accepts_exactly_what_the_feature_list_schema_allows(features: Any) -> None:
    schema_valid = _FEATURE_LIST.is_valid(features)
    if _merge_conflict(features):
        assert not _features_accept(features) or schema_valid
    else:
        assert _features_accept(features) == schema_valid, features


@pytest.mark.parametrize("depth", [MAX_DEPTH, MAX_DEPTH + 1])
def test_nesting_limit_is_the_same_in_the_schema_and_features_py(depth: int) -> None:
    nested: Any = {"v": 1}
    for _ in range(depth):
        nested = {"n": nested}
    features = [nested]  # the list's object is level 1; `depth` objects nest below it
    assert _FEATURE_LIST.is_valid(features) == _features_accept(features) == (depth <= MAX_DEPTH)


def test_catalog_row_schemas_name_the_fields_the_import_parsers_take() -> None:
    """`personalize import` parses rows with personalize/catalog.py; the API's row schemas list the same fields."""
    from personalize.catalog import INTERACTION_FIELDS, ITEM_FIELDS

    schemas = DOCUMENT["components"]["schemas"]
    assert tuple(schemas["Interaction"]["properties"]) == INTERACTION_FIELDS
    assert tuple(schemas["ItemRow"]["properties"]) == ITEM_FIELDS
