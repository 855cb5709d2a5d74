"""Browsers (personalize/api/browsers.py): bodies must be declared JSON (415), CORS only for listed origins."""

from __future__ import annotations

import http.client
import json
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from personalize.api.browsers import is_json_content_type
from personalize.config import SettingsError, load_settings

ACTIONS = [{"id": a, "features": [{"item": {"kind": a}}]} for a in ("news", "sports")]
RANK = json.dumps({"actions": ACTIONS}).encode()
SHOP = "https://shop.example.com"
KEY = {"Ocp-Apim-Subscription-Key": "client-key"}


@pytest.fixture
def client(make_app: Any) -> Any:
    return make_app(start=False).test_client()


# --------------------------------------------------------------------------- 415


@pytest.mark.parametrize("content_type", [
    "text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
    "application/jsonp", "application/json-seq", "json", "",
])
def test_a_body_not_declared_json_is_415(client: Any, content_type: str) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/personalizer/v1.0/rank", data=RANK, headers=headers)
    assert response.status_code == 415, response.json
    error = response.json["error"]
    assert error["code"] == "UnsupportedMediaType" and error["target"] == "Content-Type"
    assert "Content-Type: application/json" in error["message"]
    assert ("no Content-Type header" in error["message"]) == (not content_type)


@pytest.mark.parametrize("content_type", [
    "application/json", "application/json; charset=utf-8", "Application/JSON;charset=UTF-8",
    "application/vnd.x+json", "application/merge-patch+json",
])
def test_json_content_types_pass(client: Any, content_type: str) -> None:
    assert client.post("/personalizer/v1.0/rank", data=RANK, headers={"Content-Type": content_type}).status_code == 201


@pytest.mark.parametrize("prefix", ["/personalizer/v1.0", "/personalizer"])
def test_bodyless_calls_need_no_content_type(client: Any, prefix: str) -> None:
    event = client.post(f"{prefix}/rank", json={"actions": ACTIONS, "deferActivation": True}).json["eventId"]
    assert client.post(f"{prefix}/events/{event}/activate").status_code == 204
    assert client.post(f"{prefix}/events/{event}/activate", headers={"Content-Type": "text/plain"}).status_code == 204
    assert client.post(f"{prefix}/generators/train").status_code == 200
    # the same Activate with a body not declared JSON is refused (what a cross-site form would send)
    assert client.post(f"{prefix}/events/{event}/activate", data=b"x=1",
                       headers={"Content-Type": "application/x-www-form-urlencoded"}).status_code == 415


def test_every_body_taking_call_is_covered(client: Any) -> None:
    calls = [("POST", "/rank"), ("POST", "/events/e1/reward"), ("PUT", "/catalog/items/m1"),
             ("POST", "/catalog/items"), ("POST", "/interactions"), ("POST", "/generators/train")]
    for method, path in calls:
        response = client.open("/personalizer/v1.0" + path, method=method, data=b"{}", headers={"Content-Type": "text/plain"})
        assert response.status_code == 415, (method, path)


def test_a_chunked_body_must_be_declared_json_too(live_server: str) -> None:
    """Real HTTP: a body without Content-Length (chunked) is checked like any other."""
    url = urlsplit(live_server)
    for content_type, status in (("text/plain", 415), ("application/json", 201)):
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
        conn.request("POST", "/personalizer/v1.0/rank", body=iter([RANK[:10], RANK[10:]]),
                     headers={"Content-Type": content_type}, encode_chunked=True)
        response = conn.getresponse()
        assert response.status == status, response.read()
        conn.close()


_token = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-+"), min_size=1, max_size=20)


@given(kind=_token, subtype=_token, params=st.sampled_from(["", "; charset=utf-8", ";q=1", " ; x=y"]))
def test_is_json_content_type_accepts_exactly_json_and_plus_json(kind: str, subtype: str, params: str) -> None:
    mimetype = f"{kind}/{subtype}".lower()
    expected = mimetype == "application/json" or mimetype.endswith("+json")
    assert is_json_content_type(f"{kind}/{subtype}{params}") == expected


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["text", "application", "multipart", "image"]), subtype=_token)
def test_rank_answers_415_exactly_when_the_body_is_not_declared_json(client: Any, kind: str, subtype: str) -> None:
    content_type = f"{kind}/{subtype}"
    response = client.post("/personalizer/v1.0/rank", data=RANK, headers={"Content-Type": content_type})
    assert response.status_code == (201 if is_json_content_type(content_type) else 415)


# --------------------------------------------------------------------------- CORS


def _preflight(client: Any, origin: str, path: str = "/personalizer/v1.0/rank") -> Any:
    return client.options(path, headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, ocp-apim-subscription-key",
    })


def test_cors_is_off_by_default(client: Any) -> None:
    preflight = _preflight(client, SHOP)
    assert "Access-Control-Allow-Origin" not in preflight.headers
    ranked = client.post("/personalizer/v1.0/rank", json={"actions": ACTIONS}, headers={"Origin": SHOP})
    assert ranked.status_code == 201 and "Access-Control-Allow-Origin" not in ranked.headers


@pytest.fixture
def cors_client(make_app: Any) -> Any:
    app = make_app(start=False, cors_origins=f"{SHOP}, https://admin.example.com:8443", api_keys="client-key")
    return app.test_client()


@pytest.mark.parametrize("path", ["/personalizer/v1.0/rank", "/personalizer/rank", "/personalizer/v1.0/events/e%2F1/reward"])
def test_a_listed_origin_passes_the_preflight_without_a_key(cors_client: Any, path: str) -> None:
    preflight = _preflight(cors_client, SHOP, path)
    assert preflight.status_code == 200  # a preflight carries no key: never a 401
    assert preflight.headers["Access-Control-Allow-Origin"] == SHOP
    allowed = {h.strip().lower() for h in preflight.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"content-type", "ocp-apim-subscription-key"} <= allowed
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert "Access-Control-Allow-Credentials" not in preflight.headers


def test_authorization_is_an_allowed_header(cors_client: Any) -> None:
    preflight = cors_client.options("/personalizer/v1.0/status", headers={
        "Origin": "https://admin.example.com:8443", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization"})
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://admin.example.com:8443"
    assert preflight.headers["Access-Control-Allow-Headers"].lower() == "authorization"


@pytest.mark.parametrize("origin", ["https://evil.example", "https://shop.example.com.evil.example",
                                    "http://shop.example.com", "https://shop.example.com:444", "null"])
def test_an_unlisted_origin_gets_no_cors_headers(cors_client: Any, origin: str) -> None:
    preflight = _preflight(cors_client, origin)
    assert not any(h.lower().startswith("access-control-") for h in preflight.headers.keys())
    ranked = cors_client.post("/personalizer/v1.0/rank", json={"actions": ACTIONS}, headers={"Origin": origin, **KEY})
    assert ranked.status_code == 201 and "Access-Control-Allow-Origin" not in ranked.headers


def test_a_listed_origin_can_read_answers_and_errors(cors_client: Any) -> None:
    ranked = cors_client.post("/personalizer/v1.0/rank", json={"actions": ACTIONS}, headers={"Origin": SHOP, **KEY})
    assert ranked.status_code == 201 and ranked.headers["Access-Control-Allow-Origin"] == SHOP
    refused = cors_client.post("/personalizer/v1.0/rank", json={"actions": ACTIONS}, headers={"Origin": SHOP})
    assert refused.status_code == 401 and refused.headers["Access-Control-Allow-Origin"] == SHOP
    assert "WWW-Authenticate" in refused.headers["Access-Control-Expose-Headers"]
    bad = cors_client.post("/personalizer/v1.0/rank", data=RANK, headers={"Origin": SHOP, "Content-Type": "text/plain", **KEY})
    assert bad.status_code == 415 and bad.headers["Access-Control-Allow-Origin"] == SHOP


def test_no_origin_no_cors_headers(cors_client: Any) -> None:
    ranked = cors_client.post("/personalizer/v1.0/rank", json={"actions": ACTIONS}, headers=KEY)
    assert "Access-Control-Allow-Origin" not in ranked.headers


@pytest.mark.parametrize("value", ["shop.example.com", "https://shop.example.com/", "https://shop.example.com/app",
                                   "https://*.example.com", "ftp://shop.example.com", "https://shop.example.(com|net)"])
def test_a_bad_origin_is_a_settings_error(value: str) -> None:
    with pytest.raises(SettingsError, match="cors_origins"):
        load_settings(env={"PERSONALIZE_CORS_ORIGINS": value})


def test_any_origin_is_explicit(make_app: Any) -> None:
    client = make_app(start=False, cors_origins="*").test_client()
    assert _preflight(client, "https://anywhere.example").headers["Access-Control-Allow-Origin"] == "https://anywhere.example"


@pytest.mark.parametrize("origin", [SHOP, "https://evil.example", None])
def test_with_one_listed_origin_every_answer_varies_on_origin(make_app: Any, origin: str | None) -> None:
    """flask-cors adds Vary: Origin only for several origins; a shared cache must not serve the listed
    origin's answer (or the unlisted one's) to another origin with one listed either."""
    client = make_app(start=False, cors_origins=SHOP).test_client()
    headers = {"Origin": origin} if origin else {}
    for response in (client.post("/personalizer/v1.0/rank", json={"actions": ACTIONS}, headers=headers),
                     _preflight(client, origin or SHOP)):
        assert "origin" in {v.strip().lower() for v in response.headers.get("Vary", "").split(",")}, response.headers
