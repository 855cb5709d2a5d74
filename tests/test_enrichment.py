"""Context enrichment: the bundled time and device plugins, the time zone, limits and logging, through Rank."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from personalize.config import SettingsError, load_settings
from personalize.enrichment import RankContext
from personalize.models import Event
from plugins.device_context import device_class
from plugins.time_context import time_features

RANK = "/personalizer/v1.0/rank"
ACTIONS = [{"id": "a", "features": [{"kind": "x"}]}, {"id": "b", "features": [{"kind": "y"}]}]
FRIDAY_2130_UTC = 1_767_389_400.0  # 2026-01-02T21:30:00Z, a Friday
IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
          "Version/17.0 Mobile/15E148 Safari/604.1")


def _logged_context(service: Any, event_id: str) -> dict[str, Any]:
    with service.db.read() as session:
        example = session.scalars(select(Event.example).where(Event.event_id == event_id)).one()
    context = json.loads(example)
    context.pop("_multi")
    return context


@pytest.mark.parametrize(("hour", "weekday", "part"), [(0, 0, "night"), (5, 2, "night"), (6, 3, "morning"),
                                                       (12, 4, "afternoon"), (18, 5, "evening"), (23, 6, "evening")])
def test_time_features(hour: int, weekday: int, part: str) -> None:
    when = datetime(2026, 1, 5 + weekday, hour, 30, tzinfo=timezone.utc)  # 2026-01-05 is a Monday
    features = time_features(RankContext(when, {}, [], None))["time"]
    assert features["dayPart"] == part and features["dayOfWeek"] == when.strftime("%A")
    assert features.get("weekend", False) is (weekday >= 5)


@pytest.mark.parametrize(("user_agent", "kind"), [
    (IPHONE, "mobile"),
    ("Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1", "tablet"),
    ("Mozilla/5.0 (Linux; Android 13; SM-X200) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/116.0.0.0 Safari/537.36", "tablet"),
    ("Mozilla/5.0 (Linux; Android 13; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/116.0.0.0 Mobile Safari/537.36", "mobile"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36", "desktop"),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Safari/605.1.15", "desktop"),
    ("Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0", "desktop"),
    ("Mozilla/5.0 (SMART-TV; Linux; Tizen 6.0) AppleWebKit/538.1 (KHTML, like Gecko) Version/6.0 TV Safari/538.1", "tv"),
    ("Googlebot/2.1 (+http://www.google.com/bot.html)", "bot"),
    ("azsdk-python-ai-personalizer/1.0.0b1 Python/3.11.2 (Linux-6.1-x86_64-with-glibc2.36)", None),
    ("msrest/0.7.1 azure-cognitiveservices-personalizer/0.1.1 Python/3.11", None),
    ("python-requests/2.31.0", None),
    ("curl/8.0", None),
])
def test_device_class(user_agent: str, kind: str | None) -> None:
    assert device_class(user_agent) == kind


@settings(max_examples=200, deadline=None)
@given(user_agent=st.text(max_size=600))
def test_any_user_agent_is_classified_or_ignored(user_agent: str) -> None:
    assert device_class(user_agent) in (None, "mobile", "tablet", "desktop", "tv", "bot")


def test_a_rank_with_no_context_gets_time_and_device_features_logged(make_app: Any, database_url: str) -> None:
    app = make_app(start=False, database_url=database_url, clock=lambda: FRIDAY_2130_UTC, time_zone="Europe/Rome",
                   enrich_context=True)
    client = app.test_client()
    response = client.post(RANK, json={"actions": ACTIONS, "eventId": "e1"}, headers={"User-Agent": IPHONE})
    assert response.status_code == 201, response.json
    context = _logged_context(app.extensions["personalize"], "e1")
    # 21:30 UTC is 22:30 in Rome on Friday 2 January 2026
    assert context == {"c_time": {"dayPart": "evening", "dayOfWeek": "Friday"}, "c_device": {"class": "mobile"}}


def test_the_client_time_zone_and_the_client_features_win(make_app: Any, database_url: str) -> None:
    app = make_app(start=False, database_url=database_url, clock=lambda: FRIDAY_2130_UTC, enrich_context=True)
    client = app.test_client()
    body = {"actions": ACTIONS, "eventId": "e2",
            "contextFeatures": [{"timeZone": "Asia/Tokyo"}, {"device": {"kind": "tv"}}]}
    assert client.post(RANK, json=body, headers={"User-Agent": IPHONE}).status_code == 201
    context = _logged_context(app.extensions["personalize"], "e2")
    # 06:30 on Saturday in Tokyo; the client's own device namespace is kept, not the User-Agent's class
    assert context == {"c": {"timeZone": "Asia/Tokyo"}, "c_time": {"dayPart": "morning", "dayOfWeek": "Saturday", "weekend": True},
                       "c_device": {"kind": "tv"}}
    assert datetime.fromtimestamp(FRIDAY_2130_UTC, ZoneInfo("Asia/Tokyo")).hour == 6


def test_enrichment_can_be_turned_off_and_time_zones_are_checked(make_app: Any, tmp_path: Any) -> None:
    app = make_app(start=False, enrich_context=False)
    assert app.test_client().post(RANK, json={"actions": ACTIONS, "eventId": "e3"}, headers={"User-Agent": IPHONE}).status_code == 201
    assert _logged_context(app.extensions["personalize"], "e3") == {}
    bad = app.test_client().post(RANK, json={"actions": ACTIONS, "contextFeatures": [{"timeZone": "CEST"}]})
    assert bad.status_code == 400 and bad.json["error"]["target"] == "contextFeatures[0].timeZone"
    for zone in ("Mars/Olympus", "localtime", "../etc/passwd", ""):
        with pytest.raises(SettingsError, match="time_zone"):
            load_settings({"data_dir": str(tmp_path), "time_zone": zone}, env={})
    assert load_settings({}, env={"PERSONALIZE_TIME_ZONE": "America/New_York"}).time_zone == "America/New_York"


def test_added_features_count_toward_the_limits(make_app: Any) -> None:
    """The plugins' features are charged to max_features like the client's: a client at the limit without them
    is over it with them, a 400 naming the limit and the plugins; nothing is stored."""
    six = [{"user": {"x": 1, "y": 2}}, {"z": 3}]           # list 2 + objects 2 + user's 2 = 6 entries
    seven = [{"user": {"x": 1, "y": 2, "w": 4}}, {"z": 3}]  # 7
    app = make_app(start=False, max_features=10, clock=lambda: FRIDAY_2130_UTC, enrich_context=True)  # time adds 4: list, object, 2 values
    client = app.test_client()
    assert client.post(RANK, json={"actions": [{"id": "a"}, {"id": "b"}], "contextFeatures": six}).status_code == 201
    response = client.post(RANK, json={"actions": [{"id": "a"}, {"id": "b"}], "contextFeatures": seven, "eventId": "over"})
    assert response.status_code == 400, response.json
    assert response.json["error"]["code"] == "TooManyFeatures" and response.json["error"]["target"] == "contextFeatures"
    assert "context plugins add (time" in response.json["error"]["message"]
    with app.extensions["personalize"].db.read() as session:
        assert session.execute(select(Event).where(Event.event_id == "over")).first() is None
    plain = make_app(start=False, max_features=10, enrich_context=False).test_client()
    assert plain.post(RANK, json={"actions": [{"id": "a"}, {"id": "b"}], "contextFeatures": seven}).status_code == 201


def test_warm_up_calls_the_plugins_once_and_survives_a_broken_one(make_app: Any, caplog: Any) -> None:
    from personalize.enrichment import Enricher

    calls: list[RankContext] = []
    enricher = Enricher("UTC")
    enricher._ask = lambda context: calls.append(context) or []  # type: ignore[method-assign]
    enricher.warm()
    assert len(calls) == 1 and "Mozilla" in (calls[0].user_agent or "")

    def broken(context: RankContext) -> list[dict[str, Any]]:
        raise ValueError("boom")

    enricher._ask = broken  # type: ignore[method-assign]
    enricher.warm()
    assert "warm-up" in caplog.text
