"""Database outages: 503 with Retry-After while the database is unreachable, /health 503, one log
line each way, recovery without a restart, and every acknowledged Rank and Reward kept.

The PostgreSQL outage is real: the test's own database refuses new connections and its existing
ones are terminated (the shared server stays up), then it is allowed again.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError

from personalize import db as dbmod
from personalize.db import Database
from personalize.db_health import DatabaseHealth, is_unavailable

RANK = "/personalizer/v1.0/rank"
HEALTH = "/personalizer/v1.0/health"
STATUS = "/personalizer/v1.0/status"
ACTIONS = [{"id": a, "features": [{"item": {"kind": a}}]} for a in "abc"]


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


@contextmanager
def database_refuses_connections(admin_url: str, database_url: str) -> Iterator[None]:
    """This test's database (not the shared server) refuses new connections and drops its current ones."""
    name = make_url(database_url).database
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"), {"name": name})
        yield
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        admin.dispose()


class Traffic:
    """Threads that Rank and Reward without pause and remember every acknowledged call."""

    def __init__(self, app: Any, threads: int = 2) -> None:
        self.app = app
        self.stop = threading.Event()
        self.ranked: list[str] = []  # event ids answered 201
        self.rewarded: list[str] = []  # event ids whose reward was answered 204
        self.statuses: dict[int, int] = {}
        self.retry_after: set[str | None] = set()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(k,), daemon=True) for k in range(threads)]

    def _count(self, response: Any) -> None:
        with self._lock:
            self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
            if response.status_code == 503:
                self.retry_after.add(response.headers.get("Retry-After"))

    def _run(self, k: int) -> None:
        client = self.app.test_client()
        i = 0
        while not self.stop.is_set():
            i += 1
            event_id = f"t{k}-{i}"
            response = client.post(RANK, json={"eventId": event_id, "contextFeatures": [{"u": {"n": i % 5}}], "actions": ACTIONS})
            self._count(response)
            if response.status_code != 201:
                time.sleep(0.02)
                continue
            with self._lock:
                self.ranked.append(event_id)
            response = client.post(f"/personalizer/v1.0/events/{event_id}/reward", json={"value": 1.0})
            self._count(response)
            if response.status_code == 204:
                with self._lock:
                    self.rewarded.append(event_id)
            time.sleep(0.005)

    def __enter__(self) -> "Traffic":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(10)


@pytest.mark.postgres
def test_postgres_outage_is_503_then_recovers_without_losing_acknowledged_calls(
    make_app: Any, postgres_server: str, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    app = make_app(database_url=postgres_url, reward_wait_time=3.0, learner_interval=0.02)
    client = app.test_client()
    assert client.get(HEALTH).status_code == 200

    with Traffic(app) as traffic:
        _wait_for(lambda: len(traffic.rewarded) >= 20, 20, "rewards before the outage")
        with database_refuses_connections(postgres_server, postgres_url):
            _wait_for(lambda: client.get(HEALTH).status_code == 503, 5, "/health to report the outage")
            ranked_before = len(traffic.ranked)
            time.sleep(2.0)  # traffic, the learner and the probes all keep failing meanwhile
            assert len(traffic.ranked) == ranked_before, "a Rank was acknowledged while the database refused connections"

            for response in (
                client.post(RANK, json={"actions": ACTIONS}),
                client.post(f"/personalizer/v1.0/events/{traffic.ranked[0]}/reward", json={"value": 1.0}),
                client.get(STATUS),
                client.get(HEALTH),
            ):
                assert response.status_code == 503, response.get_data(as_text=True)
                assert response.headers["Retry-After"].isdigit()
                assert response.json["error"]["code"] == "ServiceUnavailable"
        _wait_for(lambda: client.get(HEALTH).status_code == 200, 10, "/health to report the database back")
        rewarded_after_outage = len(traffic.rewarded)
        _wait_for(lambda: len(traffic.rewarded) >= rewarded_after_outage + 20, 20, "rewards after the outage")

    assert set(traffic.statuses) <= {201, 204, 503}, traffic.statuses  # never a 500
    assert traffic.statuses.get(503), "the traffic never met the outage"
    assert traffic.retry_after == {"5"}

    # Every acknowledged call is in the database: ranked events, and one reward each for the rewarded ones.
    engine = create_engine(postgres_url)
    with engine.connect() as conn:
        stored = set(conn.execute(text("SELECT event_id FROM events")).scalars())
        reward_counts = {event_id: count for event_id, count in conn.execute(text(
            "SELECT e.event_id, count(r.id) FROM events e JOIN rewards r ON r.event_seq = e.seq GROUP BY e.event_id"
        ))}
    engine.dispose()
    assert set(traffic.ranked) <= stored
    assert all(reward_counts.get(event_id) == 1 for event_id in traffic.rewarded)

    # The learner resumed and learned every rewarded event.
    def learned_all() -> bool:
        return client.get(STATUS).json["events"]["learned"] >= len(traffic.ranked)

    _wait_for(learned_all, 20, "the learner to learn every acknowledged event")

    outage_lines = [r for r in caplog.records if "database unavailable" in r.getMessage()]
    back_lines = [r for r in caplog.records if "database available again" in r.getMessage()]
    assert len(outage_lines) == 1 and outage_lines[0].levelno == logging.WARNING, [r.getMessage() for r in outage_lines]
    assert len(back_lines) == 1, [r.getMessage() for r in back_lines]
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records if r.exc_info]
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]


@pytest.mark.postgres
def test_background_threads_log_an_outage_once_and_resume(
    make_app: Any, postgres_server: str, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The model watcher (learner off: another process learns) and the candidate refresh thread poll
    through the outage: one log line for all of them, no traceback, and both work afterwards."""
    from personalize.learner import Learner
    from tests.test_rank_generated import load_catalog

    caplog.set_level(logging.INFO)
    app = make_app(database_url=postgres_url, learner="off", model_poll_interval=0.05, generator_refresh_interval=1.0)
    client, service = app.test_client(), app.extensions["personalize"]
    load_catalog(client)
    first = client.post(RANK, json={"userId": "u1", "numCandidates": 5})
    assert first.status_code == 201  # loads the generators and starts their refresh thread
    assert service._watcher is not None and service._watcher.is_alive()
    assert service.candidates is not None and service.candidates._thread is not None

    with database_refuses_connections(postgres_server, postgres_url):
        time.sleep(3.0)  # ~60 watcher polls and ~3 refresh rounds fail meanwhile
        assert client.post(RANK, json={"userId": "u1", "numCandidates": 5}).status_code == 503
    _wait_for(lambda: client.get(HEALTH).status_code == 200, 10, "/health 200")
    assert service._watcher.is_alive() and service.candidates._thread.is_alive()

    assert client.delete("/personalizer/v1.0/catalog/items/m7").status_code == 204
    _wait_for(lambda: "m7" in service.candidates._inactive, 10, "the refresh thread to see the deactivated item")
    assert client.post(f"/personalizer/v1.0/events/{first.json['eventId']}/reward", json={"value": 1.0}).status_code == 204
    learner_db = Database(postgres_url)
    try:
        assert Learner(service.settings, learner_db, clock=lambda: time.time() + 120).step() == 1  # past the reward wait
    finally:
        learner_db.dispose()
    _wait_for(lambda: service.ranker.version == 1, 10, "the model watcher to load the new snapshot")

    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "database unavailable" in m]) == 1, messages
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR], messages


@pytest.mark.postgres
def test_postgres_outage_over_http_on_the_production_server(postgres_server: str, postgres_url: str, tmp_path: Path) -> None:
    """The same outage against `personalize serve` (gunicorn): real HTTP 503s with Retry-After, /health
    503, then 200 and working calls without a restart, and one log line each way on stderr."""
    import requests

    from tests.conftest import LiveServer

    server = LiveServer(tmp_path / "unused", env={"PERSONALIZE_DATABASE_URL": postgres_url}).start()
    try:
        base = server.url + "/personalizer/v1.0"
        acknowledged = [requests.post(base + "/rank", json={"actions": ACTIONS}, timeout=10) for _ in range(5)]
        assert [r.status_code for r in acknowledged] == [201] * 5
        with database_refuses_connections(postgres_server, postgres_url):
            _wait_for(lambda: requests.get(base + "/health", timeout=10).status_code == 503, 5, "/health 503")
            for _ in range(20):
                response = requests.post(base + "/rank", json={"actions": ACTIONS}, timeout=10)
                assert response.status_code == 503 and response.headers["Retry-After"] == "5", response.text
                assert response.json()["error"]["code"] == "ServiceUnavailable"
        _wait_for(lambda: requests.get(base + "/health", timeout=10).status_code == 200, 10, "/health 200")
        event_id = acknowledged[0].json()["eventId"]
        assert requests.post(f"{base}/events/{event_id}/reward", json={"value": 1.0}, timeout=10).status_code == 204
        acknowledged.append(requests.post(base + "/rank", json={"actions": ACTIONS}, timeout=10))
        assert acknowledged[-1].status_code == 201
        assert requests.get(base + "/status", timeout=10).json()["events"]["ranked"] == 6  # the acknowledged ones
    finally:
        server.stop()
    log = server.log()
    assert log.count("database unavailable") == 1, log
    assert log.count("database available again") == 1, log
    assert "Traceback" not in log and "ERROR" not in log, log


def test_sqlite_locked_past_busy_timeout_is_503_then_recovers(
    make_app: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """SQLite's realistic outage: another process (say a long `personalize import`) holds the write
    lock longer than busy_timeout (shortened here from 30 s). Writes are refused with 503, the
    writer connection is replaced, and everything works again once the lock is released."""
    caplog.set_level(logging.INFO)
    monkeypatch.setattr(dbmod, "SQLITE_BUSY_TIMEOUT", 0.2)
    path = tmp_path / "locked.db"
    app = make_app(database_url=f"sqlite:///{path}", reward_wait_time=2.0, learner_interval=0.02)
    client, service = app.test_client(), app.extensions["personalize"]
    first = client.post(RANK, json={"actions": ACTIONS})
    assert first.status_code == 201
    writer = service.db._writer

    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        for response in (client.post(RANK, json={"actions": ACTIONS}),
                         client.post(f"/personalizer/v1.0/events/{first.json['eventId']}/reward", json={"value": 1.0})):
            assert response.status_code == 503, response.get_data(as_text=True)
            assert response.headers["Retry-After"] == "5"
            assert response.json["error"]["code"] == "ServiceUnavailable"
        assert client.get(HEALTH).status_code == 503  # reads work (WAL), but writes failed within the last second
        time.sleep(0.5)  # the learner keeps failing meanwhile
    finally:
        other.execute("ROLLBACK")
        other.close()
    second = client.post(RANK, json={"actions": ACTIONS})
    assert second.status_code == 201
    assert service.db._writer is not writer  # the connection that met the error was replaced
    for event in (first, second):
        assert client.post(f"/personalizer/v1.0/events/{event.json['eventId']}/reward", json={"value": 1.0}).status_code == 204
    _wait_for(lambda: client.get(HEALTH).status_code == 200, 5, "/health to report the database back")
    _wait_for(lambda: client.get(STATUS).json["events"]["learned"] == 2, 10, "the learner to learn both events")

    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "database unavailable" in m]) == 1, messages
    assert len([m for m in messages if "database available again" in m]) == 1, messages
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR], messages


def _error(call: Callable[[], object]) -> BaseException:
    try:
        call()
    except BaseException as error:  # noqa: BLE001 - the test inspects it
        return error
    raise AssertionError("expected an error")


def test_outages_are_told_from_bugs_on_real_sqlite_errors(tmp_path: Path) -> None:
    cannot_open = _error(lambda: create_engine(f"sqlite:///{tmp_path / 'missing' / 'x.db'}").connect())
    assert isinstance(cannot_open, OperationalError) and is_unavailable(cannot_open)

    path = tmp_path / "x.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x INTEGER PRIMARY KEY)")
    holder.execute("BEGIN EXCLUSIVE")
    locked = _error(lambda: sqlite3.connect(path, timeout=0).execute("INSERT INTO t VALUES (1)"))
    holder.execute("ROLLBACK")
    assert is_unavailable(locked)  # "database is locked": try again later

    engine = create_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        assert not is_unavailable(_error(lambda: conn.execute(text("SELECT * FROM no_such_table"))))  # a bug: 500
        conn.execute(text("INSERT INTO t VALUES (1)"))
        duplicate = _error(lambda: conn.execute(text("INSERT INTO t VALUES (1)")))
        assert isinstance(duplicate, IntegrityError) and not is_unavailable(duplicate)
    engine.dispose()
    assert not is_unavailable(ValueError("not a database error"))


@pytest.mark.postgres
def test_outages_are_told_from_bugs_on_real_postgres_errors(postgres_url: str) -> None:
    missing = make_url(postgres_url).set(database="pz_no_such_database").render_as_string(hide_password=False)
    assert is_unavailable(_error(lambda: create_engine(missing).connect()))
    refused = make_url(postgres_url).set(port=1).render_as_string(hide_password=False)  # nothing listens there
    assert is_unavailable(_error(lambda: create_engine(refused).connect()))
    engine = create_engine(postgres_url)
    with engine.connect() as conn:
        assert not is_unavailable(_error(lambda: conn.execute(text("SELEC 1"))))
        conn.rollback()
        assert not is_unavailable(_error(lambda: conn.execute(text("SELECT 1 / 0"))))
        conn.rollback()
        assert not is_unavailable(_error(lambda: conn.execute(text("SELECT * FROM no_such_table"))))
    engine.dispose()


def test_health_probes_the_database_at_most_once_a_second(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'x.db'}")
    queries: list[str] = []
    from sqlalchemy import event

    event.listen(database.engine, "before_cursor_execute", lambda *args: queries.append(args[2]))
    try:
        health: DatabaseHealth = database.health
        assert all(health.probe() for _ in range(1000))
        assert len(queries) == 1
    finally:
        database.dispose()
