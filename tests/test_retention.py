"""Log retention (personalize/retention.py): old learned or expired events leave the store, in batches,
on SQLite and PostgreSQL; nothing still waiting is touched and the model keeps what it learned."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st
from sqlalchemy import delete, func, insert, select, update

from personalize import retention, store
from personalize.config import SettingsError
from personalize.models import Event, EventExample, ModelSnapshot, Reward

RANK = "/personalizer/v1.0/rank"
ACTIONS = [{"id": "a", "features": [{"x": {"v": 1}}]}, {"id": "b", "features": [{"x": {"v": 2}}]}]
DAY = retention.DAY


def setup(make_app: Any, clock: Any, **settings: Any) -> tuple[Any, Any]:
    app = make_app(clock=clock, start=False, reward_wait_time=60, **settings)
    return app.test_client(), app.extensions["personalize"]


def rank(client: Any, event_id: str, **extra: Any) -> None:
    response = client.post(RANK, json={"actions": ACTIONS, "eventId": event_id, **extra})
    assert response.status_code == 201, response.json


def reward(client: Any, event_id: str, value: float = 1.0) -> None:
    assert client.post(f"/personalizer/v1.0/events/{event_id}/reward", json={"value": value}).status_code == 204


def event_ids(service: Any) -> set[str]:
    with service.db.read() as session:
        return set(session.execute(select(Event.event_id)).scalars())


def counts(service: Any) -> dict[str, int]:
    with service.db.read() as session:
        return {name: session.execute(select(func.count()).select_from(model)).scalar() or 0
                for name, model in (("events", Event), ("examples", EventExample), ("rewards", Reward))}


def test_old_learned_and_expired_events_are_purged_and_nothing_waiting(make_app: Any, clock: Any, database_url: str) -> None:
    client, service = setup(make_app, clock, database_url=database_url, log_retention_days=1)
    start = clock.now
    rank(client, "old-learned")
    reward(client, "old-learned", 0.5)
    reward(client, "old-learned", 0.7)  # not counted (earliest), still purged with its event
    rank(client, "old-deferred", deferActivation=True)  # never activated: expired
    rank(client, "old-activated", deferActivation=True)
    assert service.learner.step() == 1
    version = service.learner.version
    clock.advance(1.5 * DAY)
    rank(client, "young-learned")
    reward(client, "young-learned")
    assert service.learner.step() == 1
    rank(client, "ready-unlearned")  # ready in 60 s: learnable, not learned when the purge runs
    clock.advance(0.6 * DAY)  # old-*: 2.1 days; young: 0.6; ready-unlearned: 0.6 days, ready, not learned
    assert client.post("/personalizer/v1.0/events/old-activated/activate").status_code == 204  # 2.1 days old, waiting
    rank(client, "waiting")
    status = client.get("/personalizer/v1.0/status").json
    assert status["store"]["oldestEventAt"] == start
    assert status["store"]["rows"]["events"] == 6 and status["store"]["rows"]["rewards"] == 3
    assert status["settings"]["logRetentionDays"] == 1
    assert status["store"]["bytes"] > 0

    purged = retention.purge_expired(service.db, clock(), 1, limit=1)
    assert (purged.events, purged.rewards, purged.examples) == (2, 2, 2)  # old-learned (2 rewards), old-deferred
    assert purged.batches == 2
    assert event_ids(service) == {"old-activated", "young-learned", "ready-unlearned", "waiting"}
    assert counts(service) == {"events": 4, "examples": 4, "rewards": 1}
    assert retention.purge_expired(service.db, clock(), 1).events == 0  # idempotent
    # Much later, old-activated (learned now) goes too; waiting events never, however old.
    clock.advance(30 * DAY)
    assert service.learner.step() == 3  # old-activated, ready-unlearned, waiting: their waits are over
    rank(client, "new-waiting")
    clock.advance(2 * DAY)  # new-waiting: 2 days old, its wait over, not learned yet: kept
    assert retention.purge_expired(service.db, clock(), 1).events == 4
    assert event_ids(service) == {"new-waiting"}
    # The model keeps what it learned.
    with service.db.read() as session:
        assert session.execute(select(func.max(ModelSnapshot.version))).scalar() == version + 2
    status = client.get("/personalizer/v1.0/status").json
    assert status["model"]["eventsLearned"] == 5
    assert status["store"]["oldestEventAt"] == clock.now - 2 * DAY
    assert client.post(RANK, json={"actions": ACTIONS}).status_code == 201


def test_keep_forever_is_the_default(make_app: Any, clock: Any) -> None:
    client, service = setup(make_app, clock)
    assert service.settings.log_retention_days == -1
    rank(client, "e")
    reward(client, "e")
    service.learner.step()
    clock.advance(10_000 * DAY)
    assert service.learner.maybe_purge() is None
    assert retention.purge_expired(service.db, clock(), -1).events == 0
    assert event_ids(service) == {"e"}


@pytest.mark.parametrize("days", [0, -2, 0.5])
def test_retention_days_must_be_minus_one_or_at_least_one(make_settings: Any, days: float) -> None:
    with pytest.raises(SettingsError, match="log_retention_days"):
        make_settings(log_retention_days=days)


def test_the_learner_thread_purges_while_it_holds_the_lease(make_app: Any, clock: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr("personalize.retention.PURGE_INTERVAL", 0.05)
    monkeypatch.setattr("personalize.retention.PURGE_PAUSE", 0.0)
    client, service = setup(make_app, clock, log_retention_days=3)
    for i in range(250):
        rank(client, f"e{i}")
        reward(client, f"e{i}")
    assert service.learner.maybe_purge() is None  # no lease yet: a standby learner never purges
    clock.advance(4 * DAY)
    service.learner.start()
    deadline = time.time() + 20
    while event_ids(service) and time.time() < deadline:
        time.sleep(0.05)
    assert event_ids(service) == set()
    assert counts(service) == {"events": 0, "examples": 0, "rewards": 0}
    status = client.get("/personalizer/v1.0/status").json
    assert status["model"]["eventsLearned"] == 250 and status["store"]["oldestEventAt"] is None


def test_a_backlog_is_purged_in_time_slices_between_learner_steps(make_app: Any, clock: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr("personalize.retention.PURGE_RUN_SECONDS", 0.0)  # one batch per run
    monkeypatch.setattr("personalize.retention.PURGE_BATCH", 10)
    client, service = setup(make_app, clock, log_retention_days=1)
    for i in range(35):
        rank(client, f"e{i}")
        reward(client, f"e{i}")
    assert service.learner.step() == 35
    clock.advance(2 * DAY)
    runs = [service.learner.maybe_purge() for _ in range(4)]
    assert [(r.events, r.finished) for r in runs] == [(10, False), (10, False), (10, False), (5, True)]
    assert service.learner.maybe_purge() is None  # finished: the next run is PURGE_INTERVAL away


def test_rank_and_reward_go_on_while_a_purge_runs(make_app: Any, clock: Any, database_url: str) -> None:
    """Purge batches and Rank/Reward transactions interleave (SQLite: the write lock; PostgreSQL: row
    locks and SKIP LOCKED); every call succeeds and only the old learned events go."""
    client, service = setup(make_app, clock, database_url=database_url, log_retention_days=1)
    for i in range(300):
        rank(client, f"old{i}")
        reward(client, f"old{i}")
    assert service.learner.step() == 300
    clock.advance(2 * DAY)
    errors: list[Any] = []

    def traffic() -> None:
        c = client.application.test_client()  # one client per thread
        for i in range(60):
            r = c.post(RANK, json={"actions": ACTIONS, "eventId": f"new{threading.get_ident()}-{i}"})
            if r.status_code != 201:
                errors.append(r.json)
            elif c.post(f"/personalizer/v1.0/events/{r.json['eventId']}/reward", json={"value": 1}).status_code != 204:
                errors.append("reward")

    threads = [threading.Thread(target=traffic) for _ in range(2)]
    for t in threads:
        t.start()
    purged = retention.purge_expired(service.db, clock(), 1, limit=20, pause=0.001)
    for t in threads:
        t.join()
    assert errors == []
    assert purged.events + retention.purge_expired(service.db, clock(), 1).events == 300
    assert {e for e in event_ids(service) if e.startswith("old")} == set()
    assert len(event_ids(service)) == 120 and counts(service)["rewards"] == 120


_KINDS = ("learned", "waiting", "ready", "deferred", "activated")


@pytest.fixture(scope="module")
def property_db(tmp_path_factory: Any) -> Any:
    """One migrated SQLite store for every example (each empties it): a migration per example is slow."""
    from personalize.db import Database

    db = Database(f"sqlite:///{tmp_path_factory.mktemp('retention') / 'p.db'}")
    db.upgrade()
    yield db
    db.dispose()


@settings(max_examples=40, deadline=None)
@given(events=st.lists(st.tuples(st.sampled_from(_KINDS), st.floats(0, 10), st.integers(0, 3)), max_size=25),
       days=st.integers(1, 5), batch=st.integers(1, 7))
def test_purge_removes_exactly_the_old_learned_or_expired_events(property_db: Any, events: list[Any], days: int,
                                                                  batch: int) -> None:
    """Whatever the mix of ages and join states, and the batch size: the purged events are exactly those
    older than the retention that are learned or deferred-and-never-activated, with all their rewards."""
    db = property_db
    now = 1_700_000_000.0 + 20 * DAY
    expected = set()
    with db.transaction() as connection:
        for table in (Reward, EventExample, Event):
            connection.execute(delete(table))
        for i, (kind, age_days, rewards) in enumerate(events):
            created = now - age_days * DAY
            deferred = kind in ("deferred", "activated")
            ready = None if kind == "deferred" else (now + 30 if kind == "waiting" else created + 60)
            store.insert_event(connection, {
                "event_id": f"e{i}", "created_at": created, "user_id": None, "example": "{}", "action_ids": ["a"],
                "excluded_ids": [], "ranking": [0], "probabilities": [1.0], "chosen_index": 0, "probability": 1.0,
                "model_version": 0, "extra": None, "deferred": deferred, "activated_at": None if kind == "deferred" else created,
                "wait_until": ready, "ready_at": ready,
            })
            seq = connection.execute(select(Event.seq).where(Event.event_id == f"e{i}")).scalar_one()
            for _ in range(rewards):
                connection.execute(insert(Reward).values(event_seq=seq, value=1.0, received_at=created, counted=True))
            if kind == "learned":
                connection.execute(update(Event).where(Event.seq == seq).values(claimed_version=1, learned_version=1))
            if age_days > days and kind in ("learned", "deferred"):
                expected.add((f"e{i}", rewards))
    purged = retention.purge_expired(db, now, days, limit=batch, pause=0)
    assert purged.events == purged.examples == len(expected)
    assert purged.rewards == sum(r for _, r in expected)
    with db.reading() as connection:
        left = set(connection.execute(select(Event.event_id)).scalars())
        assert connection.execute(select(func.count()).select_from(Reward)).scalar() == \
            sum(r for _, _, r in events) - purged.rewards
    assert left == {f"e{i}" for i in range(len(events))} - {e for e, _ in expected}


def test_two_purgers_at_once_purge_each_event_once(make_app: Any, clock: Any, database_url: str) -> None:
    """Two processes' purges (each its own engine) overlapping: no error, no event counted twice
    (PostgreSQL: SKIP LOCKED hands each batch to one of them; SQLite: the write lock serializes them)."""
    from personalize.db import Database

    client, service = setup(make_app, clock, database_url=database_url, log_retention_days=1)
    for i in range(200):
        rank(client, f"e{i}")
        reward(client, f"e{i}")
    assert service.learner.step() == 200
    clock.advance(2 * DAY)
    databases = [Database(service.settings.resolved_database_url) for _ in range(2)]
    results: list[Any] = []

    def purge(db: Any) -> None:
        try:
            results.append(retention.purge_expired(db, clock(), 1, limit=10, pause=0))
        except Exception as error:  # pragma: no cover - the failure the test looks for
            results.append(error)

    threads = [threading.Thread(target=purge, args=(db,)) for db in databases]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for db in databases:
        db.dispose()
    assert all(isinstance(r, retention.PurgeCounts) for r in results), results
    leftover = retention.purge_expired(service.db, clock(), 1)  # a purger stops early after a batch cut short by skips
    assert sum(r.events for r in results) + leftover.events == 200
    assert sum(r.rewards for r in results) + leftover.rewards == 200
    assert counts(service) == {"events": 0, "examples": 0, "rewards": 0}
