"""Several servers, one learner, PostgreSQL (docs/deploy.md): two `personalize serve` processes on
different ports and one `personalize learn` share a database; the learner is killed (SIGKILL) under load
and a standby takes over within the lease. Every acknowledged event is learned exactly once."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import create_engine, func, select

from personalize.models import Event, LearnerLease, ModelSnapshot
from tests.conftest import LiveServer

pytestmark = pytest.mark.postgres

LEASE = 2.0
ACTIONS = [{"id": f"a{i}", "features": [{"item": {"kind": f"k{i}"}}]} for i in range(5)]


def learner(url: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`personalize learn`, returned once it runs (it prints its owner line after opening the database)."""
    process = subprocess.Popen([sys.executable, "-m", "personalize", "learn", "--database-url", url], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    line = process.stdout.readline()  # type: ignore[union-attr]
    assert line.startswith(b"personalize: learner"), (line, process.stderr.read() if process.poll() is not None else b"")  # type: ignore[union-attr]
    return process


def test_two_servers_one_learner_and_a_standby_that_takes_over(postgres_url: str, tmp_path: Path) -> None:
    env = {"PERSONALIZE_DATABASE_URL": postgres_url, "PERSONALIZE_LEARNER": "off",
           "PERSONALIZE_REWARD_WAIT_TIME": "2", "PERSONALIZE_LEARNER_LEASE_SECONDS": str(LEASE),
           "PERSONALIZE_LEARNER_INTERVAL": "0.02"}
    servers = [LiveServer(tmp_path / f"s{i}", env=env) for i in range(2)]
    started = [threading.Thread(target=s.start) for s in servers]  # at once, on a fresh database: the migration race
    for thread in started:
        thread.start()
    for thread in started:
        thread.join()
    assert all(s.process is not None and s.process.poll() is None for s in servers)
    learner_env = {**servers[0].env}
    first = learner(postgres_url, learner_env)
    standby: subprocess.Popen[bytes] | None = None
    engine = create_engine(postgres_url)
    acknowledged: list[str] = []
    failures: list[Any] = []
    stop = threading.Event()

    def load(worker: int) -> None:
        session = requests.Session()
        for n in itertools.count():
            if stop.is_set():
                return
            ranker, rewarder = servers[n % 2], servers[(n + worker) % 2]  # rewards often reach the other server
            try:
                out = session.post(ranker.url + "/personalizer/v1.0/rank",
                                   json={"contextFeatures": [{"u": {"w": worker, "n": n % 7}}], "actions": ACTIONS}, timeout=10)
                if out.status_code != 201:
                    failures.append(("rank", out.status_code, out.text))
                    continue
                event_id = out.json()["eventId"]
                acknowledged.append(event_id)
                if n % 3:  # a third are never rewarded: learned with the default reward after the wait
                    value = 1.0 if out.json()["rewardActionId"] == f"a{worker % 5}" else 0.0
                    answer = session.post(f"{rewarder.url}/personalizer/v1.0/events/{event_id}/reward",
                                          json={"value": value}, timeout=10)
                    if answer.status_code != 204:
                        failures.append(("reward", answer.status_code, answer.text))
            except requests.RequestException as exc:
                failures.append(("http", repr(exc)))

    def max_version() -> int:
        with engine.connect() as connection:
            return connection.execute(select(func.max(ModelSnapshot.version))).scalar() or 0

    workers = [threading.Thread(target=load, args=(w,)) for w in range(3)]
    try:
        for w in workers:
            w.start()
        deadline = time.time() + 30
        while max_version() < 3 and time.time() < deadline:  # the first learner is learning
            time.sleep(0.1)
        assert max_version() >= 3, first.stderr.read().decode() if first.poll() is not None and first.stderr else ""
        standby = learner(postgres_url, learner_env)  # started and waiting: it polls for the lease
        time.sleep(0.5)
        os.killpg(first.pid, signal.SIGKILL)  # a crash: no lease release, maybe mid-step
        first.wait(10)
        killed_at = time.monotonic()
        version_at_kill = max_version()
        while max_version() == version_at_kill and time.monotonic() - killed_at < 30:
            time.sleep(0.05)
        takeover = time.monotonic() - killed_at
        time.sleep(1.5)  # more load for the standby
    finally:
        stop.set()
        for w in workers:
            w.join(30)
    try:
        print(f"takeover {takeover:.2f} s after the kill; {len(acknowledged)} events acknowledged")
        assert failures == []
        assert takeover < LEASE + 3.0, f"the standby published {takeover:.1f} s after the kill (lease {LEASE} s)"
        deadline = time.time() + 60
        with engine.connect() as connection:
            while time.time() < deadline:
                waiting = connection.execute(select(func.count()).select_from(Event)
                                             .where(Event.learned_version.is_(None))).scalar()
                connection.rollback()
                if waiting == 0:
                    break
                time.sleep(0.2)
            stored = dict(connection.execute(select(Event.event_id, Event.learned_version)).all())
            learned_count = connection.execute(
                select(ModelSnapshot.events_learned).order_by(ModelSnapshot.version.desc()).limit(1)).scalar_one()
            owner = connection.execute(select(LearnerLease.owner)).scalar_one()
        assert len(acknowledged) > 50 and len(set(acknowledged)) == len(acknowledged)
        assert set(stored) == set(acknowledged)  # nothing acknowledged was lost, nothing unacknowledged stored
        assert all(version is not None for version in stored.values())  # every event learned...
        assert learned_count == len(acknowledged)  # ...exactly once: the lineage's count is the events'
        assert {v for v in stored.values() if v > version_at_kill}  # the standby learned some
        assert owner.split(":")[1] == str(standby.pid)
        for server in servers:  # both servers serve the standby's models
            status = requests.get(server.url + "/personalizer/v1.0/status", timeout=10).json()
            assert status["model"]["servingVersion"] > version_at_kill
    finally:
        if standby is not None:
            standby.terminate()
            standby.wait(15)
        for server in servers:
            server.stop()
        engine.dispose()
