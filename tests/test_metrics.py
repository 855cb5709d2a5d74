"""GET /metrics (personalize/ops/metrics.py, personalize/api/metrics.py): exact values after known traffic,
in one process (Flask test client), under `personalize serve` with one and with two workers plus the
learner process, the database gauges, and the admin key."""

from __future__ import annotations

import glob
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import requests
from prometheus_client import values
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from personalize.config import load_settings
from personalize.models import Event
from personalize.ops import metrics
from personalize.ranker import explored
from tests.conftest import LiveServer

BASE = "/personalizer/v1.0"
ACTIONS = [{"id": a, "features": [{"kind": {"name": a}}]} for a in ("news", "sports", "science")]
REWARD_ROUTE = "/personalizer/v1.0/events/<event_id:event_id>/reward"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _scrape_client(client: Any, **headers: str) -> Samples:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Content-Type"] == metrics.CONTENT_TYPE
    return parse(response.get_data(as_text=True))


def _wait(check: Callable[[], Any], seconds: float = 60.0) -> Any:
    """``check()`` once true, or its last value after ``seconds`` (a learner process can take 15 s to start on
    a loaded 2-core machine)."""
    deadline = time.time() + seconds
    while True:
        result = check()
        if result or time.time() > deadline:
            return result
        time.sleep(0.1)


# --------------------------------------------------------------------------- one process


def test_counters_after_known_traffic(make_app: Any) -> None:
    app = make_app(reward_wait_time=0.3, learner_interval=0.02)
    client = app.test_client()
    events = [client.post(BASE + "/rank", json={"actions": ACTIONS}).json["eventId"] for _ in range(7)]
    for event_id, reward in zip(events[:4], (1.0, 0.5, -0.25, 0.0)):
        assert client.post(f"{BASE}/events/{event_id}/reward", json={"value": reward}).status_code == 204
    assert client.post(f"{BASE}/events/nope/reward", json={"value": 1}).status_code == 404
    assert client.post(BASE + "/rank", json={"actions": []}).status_code == 400
    samples = _wait(lambda: (s := _scrape_client(client)) and value(s, "personalize_events_learned_total") == 7 and s)
    assert samples, "the learner did not learn the 7 events"
    assert value(samples, "personalize_ranks_total", candidates="request") == 7
    assert value(samples, "personalize_ranks_total", candidates="generated") == 0
    assert value(samples, "personalize_rewards_total") == 4
    assert value(samples, "personalize_rewards_value") == pytest.approx(1.25)
    assert value(samples, "personalize_events_learned_reward") == pytest.approx(1.25)  # 3 events learned the default 0
    assert value(samples, "personalize_model_version") >= 1
    assert _wait(lambda: (s := _scrape_client(client)) and value(s, "personalize_model_version") ==
                 value(s, "personalize_model_serving_version")), "the ranker never served the newest snapshot"
    assert value(samples, "personalize_learner_lag_seconds") == 0
    assert value(samples, "personalize_database_up") == 1
    duration = "personalize_request_duration_seconds_count"
    assert value(samples, duration, route="/personalizer/v1.0/rank", method="POST", status="201") == 7
    assert value(samples, duration, route="/personalizer/v1.0/rank", method="POST", status="400") == 1
    assert value(samples, duration, route=REWARD_ROUTE, method="POST", status="204") == 4
    assert value(samples, duration, route=REWARD_ROUTE, method="POST", status="404") == 1
    assert value(samples, "personalize_errors_total", route=REWARD_ROUTE, status="404", code="EventNotFound") == 1
    # the histogram's buckets are cumulative and end with every request
    buckets = {dict(k[1])["le"]: v for k, v in samples.items() if k[0] == "personalize_request_duration_seconds_bucket"
               and dict(k[1])["route"] == "/personalizer/v1.0/rank" and dict(k[1])["status"] == "201"}
    assert buckets["+Inf"] == 7 and list(buckets.values()) == sorted(buckets.values())
    # exploration: the counter agrees with the stored decisions
    with app.extensions["personalize"].sessions() as session:
        stored = session.execute(select(Event.probability, Event.probabilities)).all()
    assert value(samples, "personalize_explored_ranks_total") == sum(explored(p, ps) for p, ps in stored)


def test_the_route_label_is_the_url_rule_and_never_the_raw_path(make_app: Any) -> None:
    client = make_app(start=False).test_client()
    for i in range(3):
        client.post(f"{BASE}/events/event-{i}/activate")
        client.get(f"/no/such/page/{i}")
    assert client.open("/metrics", method="BREW").status_code == 405  # no rule matched this method: "unmatched"
    samples = _scrape_client(client)
    routes = {dict(k[1]).get("route") for k in samples if k[0] == "personalize_request_duration_seconds_count"}
    assert routes == {"/personalizer/v1.0/events/<event_id:event_id>/activate", "unmatched"}
    methods = {dict(k[1]).get("method") for k in samples if k[0] == "personalize_request_duration_seconds_count"}
    assert methods == {"POST", "GET", "other"}


def test_learner_lag_is_the_age_of_the_oldest_ready_event(make_app: Any, clock: Any, database_url: str) -> None:
    app = make_app(clock=clock, database_url=database_url, learner="off", reward_wait_time=10.0)
    client = app.test_client()
    client.post(BASE + "/rank", json={"actions": ACTIONS})
    assert value(_scrape_client(client), "personalize_learner_lag_seconds") == 0  # still waiting for rewards
    clock.advance(25.0)  # ready 15 s ago; no learner runs
    client.post(BASE + "/rank", json={"actions": ACTIONS})  # waiting: not counted
    assert value(_scrape_client(client), "personalize_learner_lag_seconds") == pytest.approx(15.0)
    assert value(_scrape_client(client), "personalize_model_version") == 0


def test_metrics_answer_while_the_database_is_down(make_app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy.exc import OperationalError

    app = make_app(start=False)
    client = app.test_client()
    client.post(BASE + "/rank", json={"actions": ACTIONS})
    service = app.extensions["personalize"]

    def down(*args: Any, **kwargs: Any) -> Any:
        error = sqlite3.OperationalError("unable to open database file")
        error.sqlite_errorcode = 14  # SQLITE_CANTOPEN
        raise OperationalError("SELECT 1", {}, error)

    monkeypatch.setattr(metrics, "store_gauges", down)
    samples = _scrape_client(client)
    assert value(samples, "personalize_database_up") == 0
    assert value(samples, "personalize_ranks_total", candidates="request") == 1
    assert ("personalize_model_version", frozenset()) not in samples
    assert not service.db.health.available


# --------------------------------------------------------------------------- the admin key


KEYS = {"api_keys": "client-1", "admin_keys": "admin-1"}


def test_metrics_need_the_admin_key(make_app: Any) -> None:
    client = make_app(start=False, **KEYS).test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer client-1"}).status_code == 403
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer admin-1"}).status_code == 200  # Prometheus' way
    assert client.get("/metrics", headers={"Ocp-Apim-Subscription-Key": "admin-1"}).status_code == 200


# --------------------------------------------------------------------------- the multiprocess folder


def test_serve_keeps_the_files_of_running_processes_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(values, "ValueClass", values.ValueClass)  # prepare_dir switches both: undone after the test
    monkeypatch.setenv(metrics.MULTIPROC_ENV, "")
    monkeypatch.delenv(metrics.MULTIPROC_ENV)
    settings = load_settings({"data_dir": str(tmp_path)}, env={})
    folder = tmp_path / "metrics"
    folder.mkdir()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    for name in (f"counter_{gone.pid}.db", f"gauge_livemin_{gone.pid}.db", f"counter_{os.getpid()}.db", "stray.db",
                 f"gauge_livemin_{os.getpid()}.db"):
        (folder / name).write_bytes(b"")
    assert metrics.prepare_dir(settings, clean=False) == folder
    assert len(list(folder.iterdir())) == 5  # the learner never cleans
    metrics.prepare_dir(settings, clean=True)
    assert sorted(p.name for p in folder.iterdir()) == [f"counter_{os.getpid()}.db"]
    assert os.environ[metrics.MULTIPROC_ENV] == str(folder)
    assert load_settings({"data_dir": str(tmp_path), "metrics_dir": str(tmp_path / "m")}, env={}).metrics_dir
    assert metrics.metrics_dir(load_settings({"metrics_dir": str(tmp_path / "m")}, env={})) == tmp_path / "m"


# --------------------------------------------------------------------------- `personalize serve`


def _scrape(url: str, **headers: str) -> Samples:
    response = requests.get(url + "/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return parse(response.text)


def _traffic(url: str, ranks: int, rewards: int) -> None:
    """Each call on a new connection, so the kernel spreads them over the workers."""
    for i in range(ranks):
        event_id = requests.post(url + BASE + "/rank", json={"actions": ACTIONS}, timeout=10).json()["eventId"]
        if i < rewards:
            assert requests.post(f"{url}{BASE}/events/{event_id}/reward", json={"value": 0.5}, timeout=10).status_code == 204


def _pids(folder: Path, prefix: str) -> set[int]:
    return {int(m.group(1)) for f in glob.glob(str(folder / f"{prefix}_*.db")) if (m := re.search(r"_(\d+)\.db$", f))}


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_counts_every_worker_and_the_learner(tmp_path: Path, workers: int) -> None:
    env = {"PERSONALIZE_REWARD_WAIT_TIME": "1", "PERSONALIZE_ADMIN_KEYS": "admin-1", "PERSONALIZE_API_KEYS": "client-1"}
    server = LiveServer(tmp_path / "data", env=env, workers=workers).start()
    admin = {"Authorization": "Bearer admin-1"}
    try:
        assert requests.get(server.url + "/metrics", timeout=10).status_code == 401
        url = server.url
        session_headers = {"Ocp-Apim-Subscription-Key": "client-1"}
        for i in range(40):
            event_id = requests.post(url + BASE + "/rank", json={"actions": ACTIONS}, headers=session_headers,
                                     timeout=10).json()["eventId"]
            if i < 25:
                assert requests.post(f"{url}{BASE}/events/{event_id}/reward", json={"value": 0.5},
                                     headers=session_headers, timeout=10).status_code == 204
        learned = _wait(lambda: value(s := _scrape(url, **admin), "personalize_events_learned_total") == 40 and s)
        assert learned, "the learner's counter never reached 40"
        for _ in range(6):  # whichever worker answers the scrape, the sums are the same
            samples = _scrape(url, **admin)
            assert value(samples, "personalize_ranks_total", candidates="request") == 40
            assert value(samples, "personalize_rewards_total") == 25
            assert value(samples, "personalize_rewards_value") == pytest.approx(12.5)
            assert value(samples, "personalize_events_learned_total") == 40
            assert value(samples, "personalize_events_learned_reward") == pytest.approx(12.5)
            assert value(samples, "personalize_request_duration_seconds_count",
                         route="/personalizer/v1.0/rank", method="POST", status="201") == 40
            assert value(samples, "personalize_model_version") >= 1
            assert value(samples, "personalize_learner_lag_seconds") < 5
        assert _wait(lambda: (s := _scrape(url, **admin)) and value(s, "personalize_model_serving_version") ==
                     value(s, "personalize_model_version") >= 1), "a worker never served the newest snapshot"
        folder = tmp_path / "data" / "metrics"
        serving = _pids(folder, "gauge_livemin")
        assert len(serving) == workers  # one serving-version gauge file per live worker
        counting = _pids(folder, "counter")
        if workers == 2:
            assert len(counting) == 3  # two workers and the learner process count
            # a worker that dies leaves the live gauges; its counters stay in the sums
            victim = sorted(serving)[0]
            os.kill(victim, signal.SIGKILL)
            assert _wait(lambda: victim not in _pids(folder, "gauge_livemin")), "mark_process_dead did not run"
            assert _wait(lambda: len(_pids(folder, "gauge_livemin")) == 2), "gunicorn did not replace the worker"
            after = _scrape(url, **admin)
            assert value(after, "personalize_ranks_total", candidates="request") == 40
            assert value(after, "personalize_events_learned_total") == 40
    finally:
        server.stop()
    assert "Traceback" not in server.log(), server.log()


def test_a_separate_learner_process_counts_into_the_servers_folder(tmp_path: Path) -> None:
    """`personalize learn` started by hand on the same host (same data dir) adds its counters to /metrics."""
    env = {"PERSONALIZE_REWARD_WAIT_TIME": "0.5", "PERSONALIZE_LEARNER": "off"}
    server = LiveServer(tmp_path / "data", env=env).start()
    learner = subprocess.Popen([sys.executable, "-m", "personalize", "learn", "--data-dir", str(tmp_path / "data")],
                               env={**server.env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _traffic(server.url, 10, 10)
        assert _wait(lambda: value(_scrape(server.url), "personalize_events_learned_total") == 10), _scrape(server.url)
        assert value(_scrape(server.url), "personalize_snapshots_published_total") >= 1
        assert learner.pid in _pids(tmp_path / "data" / "metrics", "counter")
    finally:
        learner.terminate()
        learner.wait(15)
        server.stop()


def test_an_unusable_metrics_folder_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from personalize.cli import cli
    from tests.conftest import free_port

    monkeypatch.setattr(values, "ValueClass", values.ValueClass)
    monkeypatch.setenv(metrics.MULTIPROC_ENV, "")
    monkeypatch.delenv(metrics.MULTIPROC_ENV)
    (tmp_path / "a-file").write_text("")
    result = CliRunner().invoke(cli, ["serve", "--port", str(free_port()), "--data-dir", str(tmp_path / "data")],
                                env={"PERSONALIZE_METRICS_DIR": str(tmp_path / "a-file" / "metrics")})
    assert result.exit_code == 1
    assert result.output.startswith("Error: cannot use the metrics folder ") and "PERSONALIZE_METRICS_DIR" in result.output
    assert "Traceback" not in result.output
