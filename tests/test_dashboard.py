"""GET /dashboard and /dashboard/data (personalize/ops/dashboard.py, personalize/api/dashboard.py): the numbers
against the stored events, the admin key (Basic credentials for browsers), and the page in a real headless
Chromium after real traffic, with a screenshot."""

from __future__ import annotations

import base64
import os
import random
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from hypothesis import given, strategies as st
from sqlalchemy import select

from personalize.models import Event
from personalize.ops import dashboard
from personalize.ops.charts import Series, line_chart, nice_ticks
from personalize.ranker import explored
from tests.conftest import IN_CI, LiveServer
from tests.test_rank_generated import load_catalog

BASE = "/personalizer/v1.0"
ACTIONS = [{"id": a, "features": [{"topic": {"name": a}}]} for a in ("news", "sports", "science", "music")]
GENRES = ["Comedy", "Drama", "Horror", "Action", "Romance"]
SCREENSHOT = (1400, 1600)


def _reward(action: str, context: str) -> float:
    """The world the traffic comes from: sports fans click sports, the others science; nobody news (the
    first action: the baseline's value is 0)."""
    return 1.0 if (action, context) in (("sports", "fan"), ("science", "other")) else 0.0


def test_data_match_the_stored_events(make_app: Any, database_url: str) -> None:
    app = make_app(database_url=database_url, reward_wait_time=0.2, learner_interval=0.02, generator_refresh_interval=0)
    client = app.test_client()
    load_catalog(client)
    generated: list[tuple[str, str]] = []
    for i in range(60):
        if i % 10 == 0:  # Rank by userId: 6 of the 60
            body = client.post(BASE + "/rank", json={"userId": f"u{i}", "numCandidates": 5}).json
            generated.append((body["eventId"], body["rewardActionId"]))
            client.post(f"{BASE}/events/{body['eventId']}/reward", json={"value": 1.0})
            continue
        context = "fan" if i % 2 else "other"
        body = client.post(BASE + "/rank", json={"actions": ACTIONS, "contextFeatures": [{"who": context}]}).json
        client.post(f"{BASE}/events/{body['eventId']}/reward", json={"value": _reward(body["rewardActionId"], context)})
    client.post(f"{BASE}/events/missing/reward", json={"value": 1})
    deadline = time.time() + 20
    while client.get(BASE + "/status").json["events"]["learned"] < 60 and time.time() < deadline:
        time.sleep(0.1)
    data = client.get("/dashboard/data").json
    with app.extensions["personalize"].sessions() as session:
        events = session.execute(select(Event).order_by(Event.seq)).scalars().all()
    rewards = np.array([e.learned_reward for e in events])
    mu = np.array([e.probability for e in events])
    first = np.array([e.chosen_index == 0 for e in events], dtype=float)
    assert data["learning"]["state"] == "ok" and data["learning"]["modelVersion"] >= 1
    assert data["window"]["events"] == 60 and data["reward"]["learnedEvents"] == 60
    overall = data["reward"]["overall"]
    assert overall["online"]["value"] == pytest.approx(rewards.mean())
    assert overall["baseline"]["value"] == pytest.approx(np.mean(first / mu * rewards))  # IPS of "always the first"
    for policy in ("online", "baseline"):
        assert overall[policy]["low"] <= overall[policy]["value"] <= overall[policy]["high"]
    assert sum(p["online"]["events"] for p in data["reward"]["series"]) == 60
    assert len(data["reward"]["series"]) <= dashboard.BUCKETS
    assert data["exploration"]["share"] == pytest.approx(np.mean([explored(e.probability, e.probabilities) for e in events]))
    chosen = [e.action_ids[e.chosen_index] for e in events]
    top = data["topActions"][0]
    assert top["chosen"] == max(chosen.count(a["id"]) for a in ACTIONS) and top["chosen"] == chosen.count(top["id"])
    assert sum(a["chosen"] for a in data["topActions"][:4]) >= 54
    # the generator mix: the chosen item's own (not via a blend) generators, from the stored provenance
    mix = Counter(name for e in events if e.user_id for name in
                  {g["name"] for g in e.extra["generators"][e.action_ids[e.chosen_index]] if "via" not in g})
    assert data["generators"]["events"] == 6
    assert {g["generator"]: g["chosen"] for g in data["generators"]["mix"]} == dict(mix) and mix
    assert all(g["meanReward"] == 1.0 for g in data["generators"]["mix"])
    assert data["errors"]["counts"] == [{"route": BASE + "/events/<event_id:event_id>/reward", "status": "404",
                                         "code": "EventNotFound", "count": 1}]
    assert data["errors"]["recent"][0]["code"] == "EventNotFound" and data["errors"]["recent"][0]["requestId"]


def test_an_empty_store_renders(make_app: Any) -> None:
    client = make_app(start=False).test_client()
    data = client.get("/dashboard/data").json
    assert data["window"]["events"] == 0 and data["reward"]["overall"] is None and data["topActions"] == []
    assert data["learning"]["state"] == "bad"  # start=False: no learner runs
    page = client.get("/dashboard")
    assert page.status_code == 200 and page.headers["Content-Type"] == "text/html; charset=utf-8"
    html = page.get_data(as_text=True)
    assert "No data yet" in html and "No Rank calls in the window yet." in html
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "") and "https://" not in html  # nothing fetched


def test_the_numbers_are_cached_briefly(make_app: Any) -> None:
    client = make_app(start=False).test_client()
    first = client.get("/dashboard/data").json
    client.post(BASE + "/rank", json={"actions": ACTIONS})
    assert client.get("/dashboard/data").json == first  # within CACHE_SECONDS: the same numbers, no new queries
    cache = client.application.extensions["personalize.dashboard"]
    cache._at -= dashboard.CACHE_SECONDS
    assert client.get("/dashboard/data").json["window"]["events"] == 1


def test_the_dashboard_needs_the_admin_key_and_a_browser_can_send_it(make_app: Any) -> None:
    client = make_app(start=False, api_keys="client-1", admin_keys="admin-1").test_client()
    refused = client.get("/dashboard")
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert client.get("/dashboard/data").headers["WWW-Authenticate"].startswith("Basic realm=")

    def basic(user: str, key: str) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{key}".encode()).decode()}

    assert client.get("/dashboard", headers=basic("anyone", "admin-1")).status_code == 200
    assert client.get("/dashboard", headers=basic("anyone", "client-1")).status_code == 403
    assert client.get("/dashboard", headers=basic("admin-1", "wrong")).status_code == 401
    assert client.get("/dashboard/data", headers={"Authorization": "Bearer admin-1"}).status_code == 200
    assert client.get("/dashboard", headers={"Authorization": "Basic not-base64!"}).status_code == 401


@given(st.floats(-1e6, 1e6), st.floats(0, 1e6))
def test_nice_ticks_cover_the_range(low: float, width: float) -> None:
    high = low + width
    ticks = nice_ticks(low, high)
    assert ticks[0] <= low + 1e-9 * abs(low) and ticks[-1] >= high - 1e-9 * abs(high)
    assert ticks == sorted(set(ticks)) and 2 <= len(ticks) <= 16


def test_a_chart_escapes_its_labels() -> None:
    svg = line_chart([Series("<b>", "#000", [(0.0, 1.0, 0.5, 1.5), (60.0, 2.0, None, None)])], "t<", "y&")
    assert "<b>" not in svg and "&lt;b&gt;" in svg and "t&lt;" in svg and "<polygon" not in svg  # one band point: no band
    assert "No data yet" in line_chart([], "empty", "y")


# --------------------------------------------------------------------------- a real browser


def _browser() -> Any:
    """Headless Debian chromium driven by selenium (skipped locally without it, a failure in CI)."""
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not binary or not driver:
        message = "needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     f"--window-size={SCREENSHOT[0]},{SCREENSHOT[1]}", "--hide-scrollbars", "--lang=en-US"):
        options.add_argument(argument)
    browser = webdriver.Chrome(options=options, service=Service(driver))
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",  # the viewport, whatever the window's frame
                            {"width": SCREENSHOT[0], "height": SCREENSHOT[1], "deviceScaleFactor": 1, "mobile": False})
    return browser


def _traffic(url: str, admin: dict[str, str], client: dict[str, str]) -> None:
    """Real traffic: a learnable world with actions, Rank by userId over a catalog, and some errors."""
    items = [{"id": f"m{i}", "features": {"title": f"Movie {i} {GENRES[i % 5]}", "genres": [GENRES[i % 5]]}}
             for i in range(60)]
    assert requests.post(url + BASE + "/catalog/items", json={"items": items}, headers=admin, timeout=30).status_code == 200
    interactions = [{"userId": f"u{u}", "itemId": f"m{(u % 5) + 5 * k}", "type": "click", "timestamp": 1_700_000_000 + k}
                    for u in range(20) for k in range(6)]
    assert requests.post(url + BASE + "/interactions", json={"interactions": interactions}, headers=admin,
                         timeout=30).status_code == 201
    rng = random.Random(7)
    session = requests.Session()
    for i in range(240):
        context = "fan" if rng.random() < 0.5 else "other"
        body = session.post(url + BASE + "/rank", json={"actions": ACTIONS, "contextFeatures": [{"who": context}]},
                            headers=client, timeout=30).json()
        session.post(f"{url}{BASE}/events/{body['eventId']}/reward", headers=client, timeout=30,
                     json={"value": _reward(body["rewardActionId"], context)})
        if i % 6 == 0:
            user = f"u{rng.randrange(20)}"
            generated = session.post(url + BASE + "/rank", json={"userId": user, "numCandidates": 8}, headers=client,
                                     timeout=60)
            assert generated.status_code == 201, generated.text
            chosen = generated.json()["rewardActionId"]
            session.post(f"{url}{BASE}/events/{generated.json()['eventId']}/reward", headers=client, timeout=30,
                         json={"value": 1.0 if int(chosen[1:]) % 5 == int(user[1:]) % 5 else 0.0})
        if i % 40 == 0:
            session.post(f"{url}{BASE}/events/no-such-event/reward", json={"value": 1}, headers=client, timeout=30)
            session.post(url + BASE + "/rank", json={"actions": []}, headers=client, timeout=30)
        time.sleep(0.02)  # spread over a few seconds: several time buckets


def test_the_page_in_headless_chromium(tmp_path: Path) -> None:
    browser = _browser()
    keys = {"PERSONALIZE_API_KEYS": "client-1", "PERSONALIZE_ADMIN_KEYS": "admin-1",
            "PERSONALIZE_REWARD_WAIT_TIME": "1", "PERSONALIZE_GENERATOR_REFRESH_INTERVAL": "0"}
    server = LiveServer(tmp_path / "data", env=keys, workers=2).start()
    try:
        admin = {"Authorization": "Bearer admin-1"}
        _traffic(server.url, admin, {"Ocp-Apim-Subscription-Key": "client-1"})
        deadline = time.time() + 90  # the learner process can take 15 s to start on a loaded 2-core machine
        while requests.get(server.url + BASE + "/status", headers=admin, timeout=10).json()["events"]["readyToLearn"] \
                and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(dashboard.CACHE_SECONDS)  # past any numbers a worker computed earlier
        # The browser sends the admin key as Basic credentials (the password; any user name).
        host = server.url.removeprefix("http://")
        browser.get(f"http://admin:admin-1@{host}/dashboard")
        from selenium.webdriver.common.by import By

        find = browser.find_element
        assert browser.title == "personalize dashboard"
        verdict = find(By.ID, "verdict")
        assert verdict.text.startswith("Learning: model version") and "ok" in verdict.get_attribute("class")
        assert int(find(By.ID, "model-version").text) >= 1 and int(find(By.ID, "events-learned").text) >= 200
        online, baseline = float(find(By.ID, "online-value").text), float(find(By.ID, "baseline-value").text)
        assert online > baseline + 0.2  # it learned to beat "always the first action" (news: never a reward)
        assert find(By.ID, "exploration-share").text.endswith("%")
        charts = browser.find_elements(By.CSS_SELECTOR, "svg.chart")
        assert len(charts) == 2 and all(c.find_elements(By.TAG_NAME, "polyline") for c in charts)
        assert charts[0].find_elements(By.TAG_NAME, "polygon")  # the interval bands
        top = [row.text for row in browser.find_elements(By.CSS_SELECTOR, "#top-actions tr")][1:]
        assert len(top) >= 4 and any(row.startswith(("sports", "science")) for row in top[:2])
        generators = [row.text.split()[0] for row in browser.find_elements(By.CSS_SELECTOR, "#generators tr")][1:]
        assert generators and "hybrid" in generators
        errors = find(By.ID, "errors").text
        assert "EventNotFound" in errors and "BadRequest" in errors
        path = tmp_path / "dashboard.png"
        assert browser.save_screenshot(str(path))
        if os.environ.get("PERSONALIZE_DASHBOARD_SCREENSHOT"):  # docs/img/dashboard.png is made this way
            shutil.copy(path, os.environ["PERSONALIZE_DASHBOARD_SCREENSHOT"])
    finally:
        browser.quit()
        server.stop()
    from PIL import Image

    with Image.open(path) as image:
        assert image.size == SCREENSHOT
        colors = image.convert("RGB").getcolors(maxcolors=1_000_000)
        assert colors is not None and len(colors) > 200  # text, charts and panels, not a blank page
        dominant = max(colors)[0] / (image.size[0] * image.size[1])
        assert dominant < 0.9


def test_basic_credentials_count_on_the_dashboard_only(make_app: Any) -> None:
    """A browser resends Basic credentials with requests other sites make it send: elsewhere they are no key."""
    client = make_app(start=False, api_keys="client-1", admin_keys="admin-1").test_client()
    basic = {"Authorization": "Basic " + base64.b64encode(b"x:admin-1").decode()}
    assert client.get("/dashboard/data", headers=basic).status_code == 200
    for response in (client.post(BASE + "/generators/train", headers=basic), client.get("/metrics", headers=basic),
                     client.get(BASE + "/status", headers=basic)):
        assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer"


def test_apprentice_mode_shows_how_the_model_compares_with_the_baseline(make_app: Any, database_url: str,
                                                                          clock: Any) -> None:
    """Issue 16: in Apprentice the dashboard shows the mode, the agreement with the baseline and the model's
    reward bounds, the numbers GET /status reports."""
    app = make_app(database_url=database_url, clock=clock, start=False, learner="inline", learning_mode="Apprentice")
    client = app.test_client()
    assert "apprentice-agreement" not in client.get("/dashboard").get_data(as_text=True)  # nothing final yet
    actions = [{"id": a, "features": [{"kind": a}]} for a in ("a", "b", "c")]
    for i in range(30):
        client.post("/personalizer/v1.0/rank", json={"actions": actions, "eventId": f"e{i}",
                                                     "contextFeatures": [{"user": {"n": str(i % 2)}}]})
        client.post(f"/personalizer/v1.0/events/e{i}/reward", json={"value": 1.0})
        clock.advance(1.0)
    app.extensions.pop("personalize.dashboard", None)  # a fresh cache: the numbers after the traffic
    data = client.get("/dashboard/data").json
    status = client.get("/personalizer/v1.0/status").json["apprentice"]
    assert data["learningMode"] == "Apprentice" and data["apprentice"]["events"] == status["events"] == 30
    assert data["apprentice"]["agreement"] == status["agreement"] and data["apprentice"]["baselineReward"] == 1.0
    html = client.get("/dashboard").get_data(as_text=True)
    assert 'id="learning-mode">Apprentice<' in html and "apprentice-agreement" in html


def test_evaluation_and_feature_importance_results_are_shown(make_app: Any, database_url: str) -> None:
    """Issue 17: the stored results of offline evaluations and feature-importance jobs appear on the dashboard."""
    from personalize.evaluation.jobs import EVALUATION, FEATURE_IMPORTANCE, create_job
    from personalize.models import Job

    app = make_app(database_url=database_url, start=False)
    client = app.test_client()
    html = client.get("/dashboard").get_data(as_text=True)
    assert "No offline evaluation yet" in html and "No feature-importance job yet" in html
    evaluation = {"events": 1200, "estimator": "SNIPS", "optimalPolicy": "--cb_explore_adf --squarecb -q ca",
                  "policies": [{"name": "Online", "policySource": "Online", "arguments": "",
                                "summary": {"expectedReward": 0.61, "confidenceInterval": [0.58, 0.64]}},
                               {"name": "with -q ca", "policySource": "Custom", "arguments": "-q ca",
                                "summary": {"expectedReward": 0.96, "confidenceInterval": [0.94, 0.97]}}]}
    importance = {"events": 500, "featureScores": [{"namespace": "user", "featureName": "kind", "score": 0.66},
                                                   {"namespace": "noise", "featureName": "x", "score": 0.0004}]}
    with app.extensions["personalize"].db.write() as session:
        for kind, job_id, result in ((EVALUATION, "ev-1", evaluation), (FEATURE_IMPORTANCE, "fi-1", importance)):
            job = create_job(session, kind, job_id, f"{kind} one", 0.0, 1.0, {}, 10.0)
            job.status, job.result = "Succeeded", result
    app.extensions.pop("personalize.dashboard", None)
    jobs = client.get("/dashboard/data").json["jobs"]
    assert jobs["evaluations"][0]["policies"][1] == {"name": "with -q ca", "source": "Custom", "value": 0.96,
                                                     "interval": [0.94, 0.97]}
    assert jobs["featureImportances"][0]["features"][0]["featureName"] == "kind"
    html = client.get("/dashboard").get_data(as_text=True)
    assert "0.9600" in html and "--cb_explore_adf --squarecb -q ca" in html and "0.6600" in html and "Succeeded" in html
