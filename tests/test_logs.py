"""Access log and request ids (personalize/ops/logs.py): one line per request, text or JSON, the client's
request id echoed; under `personalize serve` exactly one line per request (gunicorn's and uvicorn's
access logs stay off)."""

from __future__ import annotations

import json
import logging
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings, strategies as st
from azure.ai.personalizer import PersonalizerClient
from azure.core.credentials import AzureKeyCredential

from personalize.config import SettingsError, load_settings
from personalize.ops import logs
from tests.conftest import LiveServer

BASE = "/personalizer/v1.0"
ACTIONS = [{"id": a, "features": [{"kind": {"name": a}}]} for a in ("news", "sports")]


@pytest.fixture
def access(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger=logs.ACCESS_LOGGER)
    return caplog


def _access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == logs.ACCESS_LOGGER]


def test_one_access_record_per_request_with_route_status_and_id(make_app: Any, access: pytest.LogCaptureFixture) -> None:
    client = make_app(start=False).test_client()
    ranked = client.post(BASE + "/rank", json={"actions": ACTIONS}, headers={"x-ms-client-request-id": "client-id-1"})
    missing = client.post(f"{BASE}/events/no%09such/reward", json={"value": 1})
    client.get("/forged%0Aline")
    records = _access_records(access)
    assert len(records) == 3
    first, second, _ = (r.fields for r in records)  # type: ignore[attr-defined]
    assert first["method"] == "POST" and first["path"] == BASE + "/rank" and first["route"] == BASE + "/rank"
    assert first["status"] == 201 and first["durationMs"] > 0 and first["requestId"] == "client-id-1"
    assert ranked.headers["x-ms-client-request-id"] == "client-id-1" == ranked.headers["apim-request-id"]
    assert second["route"] == BASE + "/events/<event_id:event_id>/reward" and second["status"] == 404
    assert "\t" not in records[1].getMessage() and "\\t" in records[1].getMessage()
    assert "\n" not in records[2].getMessage()  # a %0A in the path cannot forge a second log line
    assert str(uuid.UUID(missing.headers["apim-request-id"])) == second["requestId"]  # none sent: a new UUID
    assert "x-ms-client-request-id" not in missing.headers
    assert records[0].getMessage().startswith("POST /personalizer/v1.0/rank 201 ")


@pytest.mark.parametrize("header", ["x-ms-client-request-id", "apim-request-id"])
def test_the_clients_request_id_is_used(make_app: Any, header: str) -> None:
    client = make_app(start=False).test_client()
    response = client.get(BASE + "/health", headers={header: "9a1b-22"})
    assert response.headers["apim-request-id"] == "9a1b-22"


@pytest.mark.parametrize("sent", ["x" * 200, "id with spaces", "id\u00e9", ""])
def test_an_unlikely_request_id_is_replaced_not_echoed(make_app: Any, sent: str) -> None:
    client = make_app(start=False).test_client()
    response = client.get(BASE + "/health", headers={"x-ms-client-request-id": sent.encode().decode("latin-1")})
    assert response.headers["apim-request-id"] != sent and uuid.UUID(response.headers["apim-request-id"])
    assert "x-ms-client-request-id" not in response.headers


def test_refused_requests_are_logged_too(make_app: Any, access: pytest.LogCaptureFixture) -> None:
    client = make_app(start=False, api_keys="k1").test_client()
    assert client.post(BASE + "/rank", json={"actions": ACTIONS}).status_code == 401
    (record,) = _access_records(access)
    assert record.fields["status"] == 401  # type: ignore[attr-defined]


def test_access_log_off(make_app: Any, access: pytest.LogCaptureFixture) -> None:
    client = make_app(start=False, access_log=False).test_client()
    client.get(BASE + "/health")
    assert not _access_records(access)


def test_json_formatter_writes_one_object_per_line() -> None:
    record = logging.LogRecord("personalize.access", logging.INFO, __file__, 1, "GET %s", ("/x\n",), None)
    record.fields = {"status": 200, "requestId": "r1"}  # type: ignore[attr-defined]
    line = logs.JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "GET /x\n" and entry["status"] == 200 and entry["requestId"] == "r1"
    assert entry["level"] == "INFO" and entry["logger"] == "personalize.access" and entry["time"].endswith("+00:00")
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        failed = logging.LogRecord("personalize", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    assert "ValueError: boom" in json.loads(logs.JsonFormatter().format(failed))["exception"]


def test_log_format_is_validated() -> None:
    assert load_settings({"log_format": "json"}, env={}).log_format == "json"
    with pytest.raises(SettingsError, match="log_format must be one of text, json"):
        load_settings({"log_format": "xml"}, env={})


def test_serve_writes_one_json_line_per_request(tmp_path: Path) -> None:
    """Under gunicorn: each stderr line is one JSON object, one access line per request (no second line
    from gunicorn or uvicorn), and the ids Microsoft's SDK sends come back and are in the log."""
    server = LiveServer(tmp_path / "data", env={"PERSONALIZE_LOG_FORMAT": "json"}, workers=2).start()
    try:
        sdk = PersonalizerClient(server.url, AzureKeyCredential("unused"))
        sdk_result = sdk.rank({"actions": ACTIONS, "contextFeatures": [{"a": 1}]})
        sent = [requests.post(server.url + BASE + "/rank", json={"actions": ACTIONS}, timeout=10,
                              headers={"x-ms-client-request-id": f"req-{i}"}) for i in range(10)]
        assert [r.headers["x-ms-client-request-id"] for r in sent] == [f"req-{i}" for i in range(10)]
        requests.get(server.url + "/no-such-page", timeout=10)
    finally:
        server.stop()
    lines = [line for line in server.log().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line is JSON (gunicorn's own lines too)
    access = [e for e in entries if e["logger"] == logs.ACCESS_LOGGER]
    ranks = [e for e in access if e["route"] == BASE + "/rank"]
    by_sdk = [e for e in access if e["route"] == "/personalizer/rank"]  # the 2022-09-01-preview path
    health = [e for e in access if e["route"] == BASE + "/health"]  # LiveServer's readiness polls
    assert len(access) == len(ranks) + len(by_sdk) + len(health) + 1
    assert sorted(e["requestId"] for e in ranks) == sorted(f"req-{i}" for i in range(10))
    assert all(e["status"] == 201 and e["method"] == "POST" and e["durationMs"] > 0 for e in ranks + by_sdk)
    (sdk_entry,) = by_sdk
    assert uuid.UUID(sdk_entry["requestId"]) and sdk_result["eventId"]  # azure-core's x-ms-client-request-id
    assert [e["status"] for e in access if e["route"] == "unmatched"] == [404]
    assert not [e for e in entries if "gunicorn.access" in e["logger"] or "uvicorn.access" in e["logger"]]
    assert any(e["logger"].startswith("gunicorn") for e in entries)  # gunicorn's own lines, in JSON too


def test_serve_writes_text_lines_by_default(tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "data").start()
    try:
        requests.get(server.url + BASE + "/status", timeout=10, headers={"apim-request-id": "abc-123"})
    finally:
        server.stop()
    (line,) = [line for line in server.log().splitlines() if "/status" in line]
    assert " INFO personalize.access: GET /personalizer/v1.0/status 200 " in line and line.endswith("id=abc-123")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sent=st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=150))
def test_a_request_id_is_echoed_exactly_when_it_looks_like_one(make_app: Any, sent: str) -> None:
    client = _shared_client(make_app)
    response = client.get(BASE + "/health", headers={"x-ms-client-request-id": sent})
    sent = sent.strip(" \t")  # HTTP trims a header value's surrounding whitespace
    if re.fullmatch(r"[A-Za-z0-9._:\-]{1,128}", sent):
        assert response.headers["apim-request-id"] == sent == response.headers["x-ms-client-request-id"]
    else:
        assert uuid.UUID(response.headers["apim-request-id"]).version == 4
        assert "x-ms-client-request-id" not in response.headers


@given(path=st.text(max_size=300))
def test_a_logged_path_is_one_printable_line(path: str) -> None:
    shown = logs._printable(path)
    assert shown.isprintable() and len(shown) <= 200 * 10 + 3
    if path.isprintable() and len(path) <= 200:
        assert shown == path


_CLIENTS: dict[int, Any] = {}


def _shared_client(make_app: Any) -> Any:
    """One app for every Hypothesis example of a test (make_app is function-scoped)."""
    key = id(make_app)
    if key not in _CLIENTS:
        _CLIENTS.clear()
        _CLIENTS[key] = make_app(start=False).test_client()
    return _CLIENTS[key]
