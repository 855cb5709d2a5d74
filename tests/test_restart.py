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
from personalize.models import Event, MultiSlotSnapshot, Reward
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


# -- multi-slot events: the same guarantees ----------------------------------------------------------
SLOTS = [{"id": "hero", "baselineAction": "a"}, {"id": "side", "baselineAction": "b", "excludedActions": ["a"]}]


def rank_multislot(url: str, **extra: Any) -> dict[str, Any]:
    response = requests.post(f"{url}/personalizer/v1.0/multislot/rank", json={"actions": ACTIONS, "slots": SLOTS, **extra},
                             timeout=10)
    assert response.status_code == 201, response.text
    return response.json()


def reward_multislot(url: str, event_id: str, value: float, slots: tuple[str, ...] = ("hero", "side")) -> None:
    response = requests.post(f"{url}/personalizer/multislot/events/{event_id}/reward?api-version=2022-09-01-preview",
                             json={"reward": [{"slotId": s, "value": value} for s in slots]}, timeout=10)
    assert response.status_code == 204, response.text


def test_restart_keeps_multislot_model_pending_events_and_counts(tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "data").start()
    for _ in range(12):
        reward_multislot(server.url, rank_multislot(server.url)["eventId"], 1.0)
    half = [rank_multislot(server.url)["eventId"] for _ in range(4)]
    for event_id in half:  # one slot rewarded: waits for the other (earliest) or the end of the wait
        reward_multislot(server.url, event_id, 0.5, ("hero",))
    deferred = rank_multislot(server.url, deferActivation=True)["eventId"]
    before = wait_for(server.url, lambda s: s["multislotModel"]["eventsLearned"] == 12)
    server.stop()

    server.start()
    after = status(server.url)
    assert after["multislotModel"]["version"] == before["multislotModel"]["version"]
    assert after["multislotModel"]["servingVersion"] == before["multislotModel"]["version"]
    assert after["events"] == before["events"] and after["rewards"] == before["rewards"]
    for event_id in half:  # the pending events keep their first slot's reward and take the second's
        reward_multislot(server.url, event_id, 0.5, ("side",))
    assert requests.post(f"{server.url}/personalizer/v1.0/multislot/events/{deferred}/activate", timeout=10).status_code == 204
    reward_multislot(server.url, deferred, 1.0)
    final = wait_for(server.url, lambda s: s["events"]["learned"] == 17)
    assert final["multislotModel"]["eventsLearned"] == 17  # each learned exactly once across the restart
    assert final["model"]["eventsLearned"] == 0
    server.stop()
    engine = create_engine(f"sqlite:///{tmp_path / 'data' / 'personalize.db'}")
    with Session(engine) as session:
        learned = session.execute(select(Event.learned_slot_rewards).where(Event.event_id.in_(half))).scalars().all()
    assert learned == [[0.5, 0.5]] * 4


def test_kill_right_after_a_multislot_acknowledgement_loses_nothing(tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "data").start()
    acknowledged = []
    for _ in range(25):
        event_id = rank_multislot(server.url)["eventId"]
        reward_multislot(server.url, event_id, 1.0)
        acknowledged.append(event_id)
    server.stop(kill=True)  # SIGKILL: no shutdown hooks run
    engine = create_engine(f"sqlite:///{tmp_path / 'data' / 'personalize.db'}")
    with Session(engine) as session:
        events = session.execute(select(func.count()).select_from(Event).where(Event.event_id.in_(acknowledged))).scalar()
        rewards = session.execute(select(func.count()).select_from(Reward).where(Reward.slot.is_not(None))).scalar()
    assert (events, rewards) == (25, 50)
    server.start()
    final = wait_for(server.url, lambda s: s["multislotModel"]["eventsLearned"] == 25)
    assert final["events"]["learned"] == 25
    server.stop()


def test_interrupted_multislot_learner_step_is_relearned_once(make_app: Any, clock: Any, database_url: str) -> None:
    app = make_app(clock=clock, start=False, database_url=database_url)
    client, service = app.test_client(), app.extensions["personalize"]
    for _ in range(4):
        event_id = client.post("/personalizer/v1.0/multislot/rank", json={"actions": ACTIONS, "slots": SLOTS}).json["eventId"]
        client.post(f"/personalizer/v1.0/multislot/events/{event_id}/reward",
                    json={"reward": [{"slotId": "hero", "value": 1}, {"slotId": "side", "value": 0}]})
        client.post("/personalizer/v1.0/rank", json={"actions": ACTIONS, "eventId": f"single-{event_id}"})
        client.post(f"/personalizer/v1.0/events/single-{event_id}/reward", json={"value": 1})
    with service.sessions.begin() as session:  # an older learner (it claimed before learning) dies before publishing
        assert session.execute(update(Event).values(claimed_version=1)).rowcount == 8
    fresh = Learner(service.settings, service.db, clock)
    assert fresh.step() == 8
    assert fresh.step() == 0
    with service.sessions() as session:
        rows = session.execute(select(Event.slots.is_(None), Event.learned_version, Event.learned_slot_rewards)).all()
        single = store.latest_snapshot(session)
        multi = store.latest_snapshot(session, MultiSlotSnapshot)
    assert sorted(tuple(r) for r in rows) == [(False, 1, [1.0, 0.0])] * 4 + [(True, 1, None)] * 4
    assert single.events_learned == 4 and multi.events_learned == 4 and (single.version, multi.version) == (1, 1)
