"""Restarts and crashes: nothing acknowledged is lost, nothing is learned twice or skipped."""

import json
import time
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import create_engine, func, select, update
from sqlalchemy.orm import Session

from personalize import store
from personalize.learner import Learner
from personalize.models import Event, Reward
from tests.conftest import LiveServer

ACTIONS = [{"id": a, "features": [{"item": {"kind": a}}]} for a in "abcde"]


def rank(url: str, **extra: Any) -> dict[str, Any]:
    response = requests.post(f"{url}/personalizer/v1.0/rank", json={"actions": ACTIONS, **extra}, timeout=10)
    assert response.status_code == 201, response.text
    return response.json()


def reward(url: str, event_id: str, value: float) -> None:
    response = requests.post(f"{url}/personalizer/v1.0/events/{event_id}/reward", json={"value": value}, timeout=10)
    assert response.status_code == 204, response.text


def status(url: str) -> dict[str, Any]:
    return requests.get(f"{url}/personalizer/v1.0/status", timeout=10).json()


def wait_for(url: str, predicate: Any, timeout: float = 20) -> dict[str, Any]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        current = status(url)
        if predicate(current):
            return current
        time.sleep(0.05)
    raise AssertionError(f"condition not reached: {current}")


def test_restart_keeps_model_pending_events_and_counts(tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "data").start()
    rewarded = [rank(server.url)["eventId"] for _ in range(20)]
    for event_id in rewarded:
        reward(server.url, event_id, 1.0)
    pending = [rank(server.url)["eventId"] for _ in range(5)]
    deferred = rank(server.url, deferActivation=True)["eventId"]
    before = wait_for(server.url, lambda s: s["events"]["learned"] == 20)
    server.stop()

    server.start()
    after = status(server.url)
    assert after["model"]["version"] == before["model"]["version"]
    assert after["model"]["servingVersion"] == before["model"]["version"]
    assert after["events"] == before["events"]
    for event_id in pending:  # the pending events still accept rewards and get learned
        reward(server.url, event_id, 0.5)
    assert requests.post(f"{server.url}/personalizer/v1.0/events/{deferred}/activate", timeout=10).status_code == 204
    reward(server.url, deferred, 1.0)
    final = wait_for(server.url, lambda s: s["events"]["learned"] == 26)
    assert final["model"]["eventsLearned"] == 26  # each event learned exactly once across the restart
    server.stop()


def test_kill_right_after_acknowledgement_loses_nothing(tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "data").start()
    acknowledged = []
    for i in range(40):
        event_id = rank(server.url)["eventId"]
        reward(server.url, event_id, 1.0)
        acknowledged.append(event_id)
    server.stop(kill=True)  # SIGKILL: no shutdown hooks run
    engine = create_engine(f"sqlite:///{tmp_path / 'data' / 'personalize.db'}")
    with Session(engine) as session:
        events = session.execute(select(func.count()).select_from(Event).where(Event.event_id.in_(acknowledged))).scalar()
        rewards = session.execute(select(func.count()).select_from(Reward)).scalar()
    assert (events, rewards) == (40, 40)
    server.start()  # and the learner picks up everything after the crash
    final = wait_for(server.url, lambda s: s["events"]["learned"] == 40)
    assert final["model"]["eventsLearned"] == 40
    server.stop()


def test_interrupted_learner_step_is_relearned_once(make_app: Any, clock: Any, database_url: str) -> None:
    app = make_app(clock=clock, start=False, database_url=database_url)
    client, service = app.test_client(), app.extensions["personalize"]
    for _ in range(5):
        event_id = client.post("/personalizer/v1.0/rank", json={"actions": ACTIONS}).json["eventId"]
        client.post(f"/personalizer/v1.0/events/{event_id}/reward", json={"value": 1})
    with service.sessions.begin() as session:  # an older learner (it claimed before learning) dies before publishing
        assert session.execute(update(Event).values(claimed_version=1)).rowcount == 5
    fresh = Learner(service.settings, service.db, clock)
    assert fresh.step() == 5
    assert fresh.step() == 0
    with service.sessions() as session:
        learned = session.execute(select(Event.learned_version)).scalars().all()
        snapshot = store.latest_snapshot(session)
    assert learned == [1] * 5 and snapshot is not None and snapshot.events_learned == 5


def test_only_one_learner_holds_the_lease(make_app: Any, clock: Any) -> None:
    app = make_app(clock=clock, start=False)
    service = app.extensions["personalize"]
    first = Learner(service.settings, service.db, clock)
    second = Learner(service.settings, service.db, clock)
    client = app.test_client()
    event_id = client.post("/personalizer/v1.0/rank", json={"actions": ACTIONS}).json["eventId"]
    client.post(f"/personalizer/v1.0/events/{event_id}/reward", json={"value": 1})
    assert first.step() == 1
    assert second.step() == 0  # lease held by the first
    assert json.loads(json.dumps(client.get("/personalizer/v1.0/status").json))["learner"]["running"]


def test_several_workers_share_one_learner_process(tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "data", workers=2).start()
    try:
        for _ in range(30):
            reward(server.url, rank(server.url)["eventId"], 1.0)
        final = wait_for(server.url, lambda s: s["events"]["learned"] == 30 and s["learner"]["running"])
        assert final["model"]["eventsLearned"] == 30
        # every worker switches to the learner's newest snapshot (polled from the database)
        wait_for(server.url, lambda s: s["model"]["servingVersion"] == s["model"]["version"] > 0)
    finally:
        server.stop()
