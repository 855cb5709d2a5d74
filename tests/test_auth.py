"""API keys and roles (personalize/api/auth.py) and the serve-time refusal (personalize/cli.py).

Through the Flask test client, through a real `personalize serve` with raw HTTP, and through both of
Microsoft's SDKs, which send the key in ``Ocp-Apim-Subscription-Key``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
from azure.ai.personalizer import PersonalizerClient as NewPersonalizerClient
from azure.cognitiveservices.personalizer import PersonalizerClient as OldPersonalizerClient
from azure.cognitiveservices.personalizer.models import ErrorResponseException, RankableAction, RankRequest
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import HttpResponseError
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings, strategies as st
from msrest.authentication import CognitiveServicesCredentials

from personalize.api import auth
from personalize.cli import cli
from personalize.config import SettingsError, load_settings, settings_table
from tests.conftest import LiveServer

CLIENT_KEYS = ("client-key-1", "client-key-2")  # two at once: rotation
ADMIN_KEY = "admin-key-1"
KEYS = {"api_keys": ",".join(CLIENT_KEYS), "admin_keys": ADMIN_KEY}
ACTIONS = [{"id": a, "features": [{"item": {"kind": a}}]} for a in ("news", "sports", "science")]
PREFIXES = ("/personalizer/v1.0", "/personalizer")


def _key(key: str) -> dict[str, str]:
    return {"Ocp-Apim-Subscription-Key": key}


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def keyed(make_app: Any) -> Any:
    return make_app(start=False, **KEYS).test_client()


def _rank(client: Any, headers: dict[str, str], prefix: str = "/personalizer/v1.0", **extra: Any) -> Any:
    return client.post(f"{prefix}/rank", json={"actions": ACTIONS, **extra}, headers=headers)


# --------------------------------------------------------------------------- roles, test client


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("key", [*CLIENT_KEYS, ADMIN_KEY])
@pytest.mark.parametrize("send", [_key, _bearer])
def test_client_endpoints_answer_client_and_admin_keys(keyed: Any, prefix: str, key: str, send: Any) -> None:
    headers = send(key)
    ranked = _rank(keyed, headers, prefix, deferActivation=True)
    assert ranked.status_code == 201, ranked.json
    event = ranked.json["eventId"]
    assert keyed.post(f"{prefix}/events/{event}/activate", headers=headers).status_code == 204
    assert keyed.post(f"{prefix}/events/{event}/reward", json={"value": 1.0}, headers=headers).status_code == 204
    assert keyed.get(f"{prefix}/status", headers=headers).status_code == 200


ADMIN_CALLS = [
    ("PUT", "/catalog/items/m1", {"features": {"title": "a drama", "genres": ["drama"]}}),
    ("POST", "/catalog/items", {"items": [{"id": "m2", "features": {"title": "a comedy", "genres": ["drama"]}}]}),
    ("GET", "/catalog/items/m1", None),
    ("POST", "/interactions", {"interactions": [{"userId": "u1", "itemId": "m1"}]}),
    ("GET", "/users/u1", None),
    ("DELETE", "/users/u1", None),
    ("POST", "/generators/train", None),
    ("DELETE", "/catalog/items/m1", None),
    ("GET", "/configurations/service", None),
    ("PUT", "/configurations/service", {"rewardWaitTime": "PT1M", "defaultReward": 0, "rewardAggregation": "earliest",
                                        "explorationPercentage": 0.1, "modelExportFrequency": "PT1M",
                                        "logRetentionDays": -1, "modelRetrainDays": 0}),
    ("GET", "/model", None),
    ("DELETE", "/model", None),
    ("GET", "/model/properties", None),
    ("GET", "/logs/properties", None),
    ("DELETE", "/logs", None),
    ("GET", "/configurations/policy", None),
    ("PUT", "/configurations/policy", {"name": "p", "arguments": "--cb_explore_adf --epsilon 0.1 -q ca"}),
    ("DELETE", "/configurations/policy", None),
    ("PUT", "/evaluations/auth-e1", {"name": "e", "startTime": "2020-01-01T00:00:00Z", "endTime": "2030-01-01T00:00:00Z"}),
    ("GET", "/evaluations/auth-e1", None),
    ("GET", "/evaluations", None),
    ("DELETE", "/evaluations/auth-e1", None),
    ("PUT", "/featureImportances/auth-f1", {"name": "f", "startTime": "2020-01-01T00:00:00Z", "endTime": "2030-01-01T00:00:00Z"}),
    ("GET", "/featureImportances/auth-f1", None),
    ("GET", "/featureImportances", None),
    ("DELETE", "/featureImportances/auth-f1", None),
]


@pytest.mark.parametrize("prefix", PREFIXES)
def test_admin_endpoints_are_403_for_client_keys_and_work_for_admin_keys(keyed: Any, prefix: str) -> None:
    for method, path, body in ADMIN_CALLS:
        refused = keyed.open(prefix + path, method=method, json=body, headers=_key(CLIENT_KEYS[0]))
        assert refused.status_code == 403, (method, path, refused.json)
        assert refused.json["error"]["code"] == "PermissionDenied"
        assert "admin key" in refused.json["error"]["message"]
        assert "WWW-Authenticate" not in refused.headers
    for method, path, body in ADMIN_CALLS:
        done = keyed.open(prefix + path, method=method, json=body, headers=_bearer(ADMIN_KEY))
        assert done.status_code in (200, 201, 204), (method, path, done.json)


@pytest.mark.parametrize("headers", [
    {}, _key("wrong-key"), _bearer("wrong-key"), _key(""), {"Authorization": f"Basic {ADMIN_KEY}"},
    {"Authorization": ADMIN_KEY}, _key(CLIENT_KEYS[0] + "x"), _key(CLIENT_KEYS[0][:-1]),
])
def test_missing_or_wrong_key_is_401_naming_the_header(keyed: Any, headers: dict[str, str]) -> None:
    for response in (_rank(keyed, headers), keyed.get("/personalizer/v1.0/status", headers=headers),
                     keyed.put("/personalizer/v1.0/catalog/items/m1", json={"features": {}}, headers=headers)):
        assert response.status_code == 401, response.json
        assert response.headers["WWW-Authenticate"] == "Bearer"
        error = response.json["error"]
        assert error["code"] == "Unauthorized"
        assert "Ocp-Apim-Subscription-Key" in error["message"]
        for key in (*CLIENT_KEYS, ADMIN_KEY):
            assert key not in response.get_data(as_text=True)


def test_the_ocp_header_wins_over_authorization(keyed: Any) -> None:
    assert _rank(keyed, {**_key("wrong-key"), **_bearer(ADMIN_KEY)}).status_code == 401
    assert _rank(keyed, {**_key(CLIENT_KEYS[1]), **_bearer("wrong-key")}).status_code == 201
    assert _rank(keyed, {"Authorization": f"bearer   {CLIENT_KEYS[0]}"}).status_code == 201  # scheme is case-insensitive


@pytest.mark.parametrize("path", ["/personalizer/v1.0/health", "/personalizer/health"])
def test_health_stays_open(keyed: Any, path: str) -> None:
    assert keyed.get(path).status_code == 200
    assert keyed.get(path, headers=_key("wrong-key")).status_code == 200


def test_unknown_routes_need_a_key_then_say_404(keyed: Any) -> None:
    assert keyed.get("/personalizer/v1.0/no-such-thing").status_code == 401
    assert keyed.get("/personalizer/v1.0/no-such-thing", headers=_key(CLIENT_KEYS[0])).status_code == 404
    assert keyed.get("/personalizer/v1.0/rank", headers=_key(CLIENT_KEYS[0])).status_code == 405


def test_every_endpoint_has_a_decided_role(keyed: Any) -> None:
    """A new operation is admin-only until the registry (schemas.OPERATIONS) says otherwise (this test names them all)."""
    roles = keyed.application.extensions["personalize.auth"].roles
    by_role: dict[int, set[str]] = {auth.OPEN: set(), auth.CLIENT: set(), auth.ADMIN: set()}
    for endpoint, role in roles.items():
        if endpoint is not None:
            by_role[role].add(endpoint.replace("_preview.", "."))
    assert by_role[auth.OPEN] == {"status.health", "openapi.document"}
    assert by_role[auth.CLIENT] == {"rank.rank", "events.reward", "events.activate", "status.status",
                                    "multislot.rank", "multislot.reward", "multislot.activate"}
    assert by_role[auth.ADMIN] == {
        "static", "catalog.put_item", "catalog.post_items", "catalog.read_item", "catalog.delete_item",
        "catalog.post_interactions", "catalog.train_generators", "users.export", "users.erase",
        "configuration.get_service", "configuration.put_service",
        "model.export_model", "model.import_model", "model.reset_model", "model.properties", "logs.properties", "logs.delete",
        "metrics.metrics", "dashboard.page", "dashboard.data",
        "policy.get_policy", "policy.put_policy", "policy.delete_policy", "evaluations.apply_from_evaluation",
        "evaluations.create_evaluation", "evaluations.read_evaluation", "evaluations.list_evaluations",
        "evaluations.remove_evaluation", "evaluations.create_feature_importance", "evaluations.read_feature_importance",
        "evaluations.list_feature_importances", "evaluations.remove_feature_importance",
    }
    assert roles.get("a.later.endpoint", auth.ADMIN) == auth.ADMIN


def test_admin_keys_alone_turn_auth_on(make_app: Any) -> None:
    client = make_app(start=False, admin_keys=ADMIN_KEY).test_client()
    assert _rank(client, {}).status_code == 401
    assert _rank(client, _key(ADMIN_KEY)).status_code == 201


def test_client_keys_alone_leave_admin_endpoints_unreachable_and_say_why(make_app: Any) -> None:
    client = make_app(start=False, api_keys=CLIENT_KEYS[0]).test_client()
    assert _rank(client, _key(CLIENT_KEYS[0])).status_code == 201
    refused = client.post("/personalizer/v1.0/generators/train", headers=_key(CLIENT_KEYS[0]))
    assert refused.status_code == 403
    assert "PERSONALIZE_ADMIN_KEYS is empty" in refused.json["error"]["message"]


def test_without_keys_nothing_is_checked_and_no_hook_runs(make_app: Any) -> None:
    app = make_app(start=False)
    assert "personalize.auth" not in app.extensions
    assert not any(isinstance(f, auth.KeyCheck) for f in app.before_request_funcs.get(None, []))
    client = app.test_client()
    assert _rank(client, {}).status_code == 201
    assert client.put("/personalizer/v1.0/catalog/items/m1", json={"features": {}}).status_code == 201


# The strings a client could send in a header (visible ASCII), other than the configured keys.
_header_values = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=80).filter(
    lambda s: s not in (*CLIENT_KEYS, ADMIN_KEY)
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(presented=_header_values, bearer=st.booleans())
def test_any_other_string_is_401_and_the_answer_does_not_depend_on_it(keyed: Any, presented: str, bearer: bool) -> None:
    reference = keyed.get("/personalizer/v1.0/status", headers=_key("not-a-key"))
    response = keyed.get("/personalizer/v1.0/status", headers=_bearer(presented) if bearer else _key(presented))
    assert response.status_code == 401
    assert response.get_data() == reference.get_data()  # the key is neither echoed nor hinted at
    ids = ("apim-request-id",)  # a new request id each call
    assert {k: v for k, v in response.headers.items() if k.lower() not in ids} == \
        {k: v for k, v in reference.headers.items() if k.lower() not in ids}


# --------------------------------------------------------------------------- status hides hosts and processes


def _owner_visible(client: Any, headers: dict[str, str]) -> dict[str, Any]:
    deadline = time.time() + 10
    while time.time() < deadline:
        body = client.get("/personalizer/v1.0/status", headers=headers).json
        if body["learner"]["running"]:
            return body
        time.sleep(0.05)
    raise AssertionError("the learner never took its lease")


def test_status_shows_the_learner_owner_to_admins_only(make_app: Any) -> None:
    client = make_app(**KEYS).test_client()  # learner thread running: it holds the lease
    admin = _owner_visible(client, _key(ADMIN_KEY))
    host, pid = socket.gethostname(), str(os.getpid())
    assert admin["learner"]["owner"].startswith(f"{host}:{pid}:")
    seen = client.get("/personalizer/v1.0/status", headers=_key(CLIENT_KEYS[0]))
    assert seen.status_code == 200
    assert seen.json["learner"] == {"running": True}
    assert host not in seen.get_data(as_text=True) and f":{pid}:" not in seen.get_data(as_text=True)


def test_status_without_keys_still_shows_the_owner(make_app: Any) -> None:
    assert "owner" in _owner_visible(make_app().test_client(), {})["learner"]


# --------------------------------------------------------------------------- settings never show keys


def test_keys_are_never_shown_by_settings() -> None:
    settings = load_settings(env={"PERSONALIZE_API_KEYS": " k-one , k-two,", "PERSONALIZE_ADMIN_KEYS": "a-one"})
    assert settings.api_key_list == ("k-one", "k-two") and settings.admin_key_list == ("a-one",)
    for text in (repr(settings), str(settings.status_summary()), settings_table()):
        assert "k-one" not in text and "a-one" not in text


@pytest.mark.parametrize("value", ["good-key,bad key", "['a', 'b']", "k\u00e9y", "a;b"])
def test_a_key_with_unsendable_characters_is_refused_without_echoing_it(value: str) -> None:
    with pytest.raises(SettingsError, match="api_keys: key") as excinfo:
        load_settings(env={"PERSONALIZE_API_KEYS": value})
    assert value not in str(excinfo.value)


# --------------------------------------------------------------------------- serve refuses a network without keys


@pytest.fixture
def serve_calls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[list[tuple[Any, ...]]]:
    """`personalize serve` up to the point it would bind: run_server and the port probe record instead."""
    calls: list[tuple[Any, ...]] = []
    for name in ("PERSONALIZE_API_KEYS", "PERSONALIZE_ADMIN_KEYS", "PERSONALIZE_CONFIG", "PERSONALIZE_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PERSONALIZE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr("personalize.server.run_server", lambda *args, **kw: calls.append(("run", *args)))
    monkeypatch.setattr("personalize.cli._check_port_free", lambda host, port: calls.append(("probe", host, port)))
    yield calls


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "[::]", "192.168.1.20", "10.0.0.7", "", "no-such-host.invalid"])
def test_serve_refuses_a_non_loopback_host_without_keys(serve_calls: list[Any], host: str) -> None:
    result = CliRunner().invoke(cli, ["serve", "--host", host, "--port", "8999"])
    assert result.exit_code == 1, result.output
    assert result.output.count("\n") == 1, result.output  # one line, no traceback
    for word in ("PERSONALIZE_API_KEYS", "PERSONALIZE_ADMIN_KEYS", "--no-auth"):
        assert word in result.output
    assert serve_calls == []  # never bound, not even by the port probe


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1"])
def test_serve_on_loopback_stays_open_without_keys(serve_calls: list[Any], host: str) -> None:
    result = CliRunner().invoke(cli, ["serve", "--host", host, "--port", "8999"])
    assert result.exit_code == 0, result.output
    assert ("run", host, 8999, 1, 4) in serve_calls
    assert "WARNING" not in result.output


def test_no_auth_serves_open_with_a_warning(serve_calls: list[Any]) -> None:
    result = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0", "--port", "8999", "--no-auth"])
    assert result.exit_code == 0, result.output
    assert ("run", "0.0.0.0", 8999, 1, 4) in serve_calls
    assert "WARNING: --no-auth" in result.output


def test_serve_with_keys_takes_any_host(serve_calls: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERSONALIZE_API_KEYS", "client-key")
    monkeypatch.setenv("PERSONALIZE_ADMIN_KEYS", "admin-key")
    result = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0", "--port", "8999"])
    assert result.exit_code == 0, result.output
    assert ("run", "0.0.0.0", 8999, 1, 4) in serve_calls
    assert "client-key" not in result.output and "admin-key" not in result.output


def test_serve_with_client_keys_only_says_admin_endpoints_are_closed(serve_calls: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERSONALIZE_API_KEYS", "client-key")
    result = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0", "--port", "8999"])
    assert result.exit_code == 0, result.output
    assert "no PERSONALIZE_ADMIN_KEYS" in result.output and "403" in result.output


def test_no_auth_with_keys_is_a_contradiction(serve_calls: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERSONALIZE_ADMIN_KEYS", "admin-key")
    result = CliRunner().invoke(cli, ["serve", "--no-auth"])
    assert result.exit_code == 2
    assert "--no-auth contradicts" in result.output
    assert serve_calls == []


def test_the_real_command_refuses_before_binding(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERSONALIZE_")}
    port = 8999
    done = subprocess.run([sys.executable, "-m", "personalize", "serve", "--host", "0.0.0.0", "--port", str(port),
                           "--data-dir", str(tmp_path)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.startswith("Error: refusing to serve 0.0.0.0 without API keys")
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "personalize.db").exists()  # refused before touching anything


# --------------------------------------------------------------------------- a real server, raw HTTP and both SDKs


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {"PERSONALIZE_API_KEYS": ",".join(CLIENT_KEYS), "PERSONALIZE_ADMIN_KEYS": ADMIN_KEY}
    server = LiveServer(tmp_path_factory.mktemp("keyed"), env=env).start()
    yield server.url
    server.stop()


def test_raw_http_roles(keyed_server: str) -> None:
    v1 = keyed_server + "/personalizer/v1.0"
    assert requests.post(f"{v1}/rank", json={"actions": ACTIONS}, timeout=10).status_code == 401
    ranked = requests.post(f"{v1}/rank", json={"actions": ACTIONS}, headers=_key(CLIENT_KEYS[1]), timeout=10)
    assert ranked.status_code == 201
    reward = requests.post(f"{v1}/events/{ranked.json()['eventId']}/reward", json={"value": 1},
                           headers=_bearer(CLIENT_KEYS[0]), timeout=10)
    assert reward.status_code == 204
    for headers, status in ((_key(CLIENT_KEYS[0]), 403), (_key(ADMIN_KEY), 201)):
        put = requests.put(f"{v1}/catalog/items/m1", json={"features": {"genre": "drama"}}, headers=headers, timeout=10)
        assert put.status_code == status, put.text
    assert requests.post(f"{v1}/generators/train", headers=_key(CLIENT_KEYS[0]), timeout=30).status_code == 403
    assert requests.post(f"{v1}/generators/train", headers=_key(ADMIN_KEY), timeout=60).status_code == 200
    wrong = requests.get(f"{v1}/status", headers=_key("nope"), timeout=10)
    assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"] == "Bearer"
    assert requests.get(f"{v1}/health", timeout=10).status_code == 200
    assert requests.get(f"{keyed_server}/personalizer/health", timeout=10).status_code == 200
    admin_view = requests.get(f"{v1}/status", headers=_key(ADMIN_KEY), timeout=10).json()
    client_view = requests.get(f"{v1}/status", headers=_key(CLIENT_KEYS[0]), timeout=10).json()
    assert "owner" in admin_view["learner"] and "owner" not in client_view["learner"]


def test_status_cli_sends_the_environments_key(keyed_server: str) -> None:
    asked = CliRunner().invoke(cli, ["status", "--url", keyed_server], env={"PERSONALIZE_ADMIN_KEYS": ADMIN_KEY,
                                                                           "PERSONALIZE_API_KEYS": ""})
    assert asked.exit_code == 0, asked.output
    assert '"owner"' in asked.output
    refused = CliRunner().invoke(cli, ["status", "--url", keyed_server], env={"PERSONALIZE_ADMIN_KEYS": "",
                                                                             "PERSONALIZE_API_KEYS": "wrong"})
    assert refused.exit_code == 1
    assert "answered 401" in refused.output and "Ocp-Apim-Subscription-Key" in refused.output


@pytest.mark.parametrize("key", [*CLIENT_KEYS, ADMIN_KEY])
def test_new_sdk_with_keys(keyed_server: str, key: str) -> None:
    with NewPersonalizerClient(keyed_server, AzureKeyCredential(key), retry_total=0) as client:
        event_id = f"new-{uuid.uuid4()}"
        ranked = client.rank({"actions": ACTIONS, "eventId": event_id, "deferActivation": True})
        assert ranked["eventId"] == event_id
        assert client.activate(event_id) is None
        assert client.reward(event_id, {"value": 1.0}) is None


def test_new_sdk_with_a_wrong_key_is_401(keyed_server: str) -> None:
    with NewPersonalizerClient(keyed_server, AzureKeyCredential("wrong-key"), retry_total=0) as client:
        with pytest.raises(HttpResponseError) as excinfo:
            client.rank({"actions": ACTIONS})
    assert excinfo.value.status_code == 401
    assert "Ocp-Apim-Subscription-Key" in str(excinfo.value)


@pytest.mark.parametrize("key", [*CLIENT_KEYS, ADMIN_KEY])
def test_old_sdk_with_keys(keyed_server: str, key: str) -> None:
    client = OldPersonalizerClient(keyed_server, CognitiveServicesCredentials(key))
    actions = [RankableAction(id=a["id"], features=a["features"]) for a in ACTIONS]
    ranked = client.rank(RankRequest(actions=actions, defer_activation=True))
    assert client.events.activate(ranked.event_id) is None
    assert client.events.reward(ranked.event_id, 1.0) is None


def test_old_sdk_with_a_wrong_key_is_401(keyed_server: str) -> None:
    client = OldPersonalizerClient(keyed_server, CognitiveServicesCredentials("wrong-key"))
    with pytest.raises(ErrorResponseException) as excinfo:
        client.rank(RankRequest(actions=[RankableAction(id=a["id"], features=a["features"]) for a in ACTIONS]))
    assert excinfo.value.response.status_code == 401
    assert excinfo.value.error.error.code == "Unauthorized"
    assert "Ocp-Apim-Subscription-Key" in excinfo.value.error.error.message
