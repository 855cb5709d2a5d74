"""A user's data (personalize/userdata.py, personalize/api/users.py, `personalize users`): export everything,
erase everything in one transaction, on SQLite and PostgreSQL; nothing of the user is left in any table."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings, strategies as st
from sqlalchemy import create_engine, delete, func, insert, select, text

from personalize import store
from personalize.catalog import load_training_data
from personalize.cli import cli
from personalize.db import Database
from personalize.models import Base, Event, EventExample, Interaction, Reward
from personalize.userdata import delete_user, export_user

USERS = "/personalizer/v1.0/users"
RANK = "/personalizer/v1.0/rank"
ERASE = "erase-me-7f3a91"  # distinctive: found by substring in every column of every table
KEEP = "keep-me-52c0d4"
ACTIONS = [{"id": f"item-{a}", "features": [{"item": {"kind": a}}]} for a in "abc"]


def setup(make_app: Any, clock: Any, **settings: Any) -> tuple[Any, Any]:
    app = make_app(clock=clock, start=False, reward_wait_time=60, **settings)
    return app.test_client(), app.extensions["personalize"]


def populate(client: Any, user: str, tag: str) -> None:
    """Three events (two rewarded, one learned later), a deferred one waiting, two posted interactions."""
    for i in range(3):
        out = client.post(RANK, json={"userId": user, "actions": ACTIONS, "eventId": f"{tag}-ev{i}",
                                      "contextFeatures": [{"profile": {"city": f"{tag}-city"}}]})
        assert out.status_code == 201, out.json
        if i < 2:
            assert client.post(f"/personalizer/v1.0/events/{tag}-ev{i}/reward", json={"value": 1.0}).status_code == 204
    assert client.post(RANK, json={"userId": user, "actions": ACTIONS, "eventId": f"{tag}-deferred",
                                   "deferActivation": True}).status_code == 201
    added = client.post("/personalizer/v1.0/interactions", json={"interactions": [
        {"userId": user, "itemId": "item-a", "type": "view"}, {"userId": user, "itemId": "item-b", "type": "purchase"}]})
    assert added.status_code == 201, added.json


def rows_mentioning(url: str, needles: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """Every row, of every table of the schema, with a column whose text or bytes contain a needle."""
    engine = create_engine(url)
    found = []
    try:
        with engine.connect() as connection:
            for table in Base.metadata.sorted_tables:
                for row in connection.execute(select(table)).mappings():
                    for value in row.values():
                        shown = value.decode("latin-1") if isinstance(value, bytes) else json.dumps(value, default=str)
                        if any(n in shown for n in needles):
                            found.append((table.name, dict(row)))
                            break
            assert connection.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
    finally:
        engine.dispose()
    return found


def test_export_then_erase_leaves_nothing_of_the_user(make_app: Any, clock: Any, database_url: str) -> None:
    client, service = setup(make_app, clock, database_url=database_url)
    populate(client, ERASE, "gone")
    populate(client, KEEP, "kept")
    assert client.post(RANK, json={"actions": ACTIONS, "eventId": "anonymous"}).status_code == 201
    assert service.learner.step() == 4  # the rewarded events of both users
    clock.advance(61)  # ev2 of each user: default reward; the deferred ones wait for activation

    exported = client.get(f"{USERS}/{ERASE}")
    assert exported.status_code == 200, exported.json
    data = exported.json
    assert data["userId"] == ERASE
    assert [e["eventId"] for e in data["events"]] == ["gone-ev0", "gone-ev1", "gone-ev2", "gone-deferred"]
    first = data["events"][0]
    assert first["learned"] == {"modelVersion": 1, "reward": 1.0}
    assert first["rewards"][0]["value"] == 1.0 and first["rewards"][0]["counted"] is True
    assert first["rewardActionId"] == first["ranking"][0]["id"] and first["actions"] == [a["id"] for a in ACTIONS]
    assert "gone-city" in json.dumps(first["example"])  # the context exactly as VW saw it
    assert data["events"][3]["deferActivation"] is True and data["events"][3]["learned"] is None
    assert sorted((i["type"], i["itemId"]) for i in data["interactions"]) == [
        ("purchase", "item-b"), ("reward", first["rewardActionId"]), ("reward", data["events"][1]["rewardActionId"]),
        ("view", "item-a")]
    kept_before = client.get(f"{USERS}/{KEEP}").json
    status_before = client.get("/personalizer/v1.0/status").json

    erased = client.delete(f"{USERS}/{ERASE}")
    assert erased.status_code == 200, erased.json
    rewards = sum(len(e["rewards"]) for e in data["events"])
    assert erased.json == {"userId": ERASE, "deleted": {
        "events": 4, "rewards": rewards, "eventExamples": 4, "interactions": len(data["interactions"])}}

    url = service.settings.resolved_database_url
    assert rows_mentioning(url, [ERASE, "gone-ev", "gone-deferred", "gone-city"]) == []
    assert client.get(f"{USERS}/{KEEP}").json == kept_before
    status = client.get("/personalizer/v1.0/status").json
    assert status["events"]["ranked"] == status_before["events"]["ranked"] - 4 == 5
    assert status["rewards"]["received"] == status_before["rewards"]["received"] - rewards
    assert status["store"]["rows"]["interactions"] == status_before["store"]["rows"]["interactions"] - len(data["interactions"])
    assert status["model"]["version"] == status_before["model"]["version"]  # the model keeps what it learned

    for response in (client.get(f"{USERS}/{ERASE}"), client.delete(f"{USERS}/{ERASE}")):
        assert response.status_code == 404 and response.json["error"]["code"] == "UserNotFound"
    late = client.post("/personalizer/v1.0/events/gone-deferred/activate")
    assert late.status_code == 404  # the waiting event went with the user (explicit erasure)
    assert service.learner.step() == 2  # kept-ev2 and the anonymous event (default reward); nothing of the erased user
    assert client.post(RANK, json={"userId": ERASE, "actions": ACTIONS}).status_code == 201  # a new start


def test_an_event_erased_while_it_is_learned_is_not_learned(make_app: Any, clock: Any, database_url: str,
                                                             monkeypatch: Any) -> None:
    client, service = setup(make_app, clock, database_url=database_url)
    populate(client, ERASE, "gone")
    populate(client, KEEP, "kept")
    read = store.ready_events

    def erase_after_reading(*args: Any, **kwargs: Any) -> Any:
        joined = read(*args, **kwargs)
        assert client.delete(f"{USERS}/{ERASE}").status_code == 200  # between the learner's read and its publish
        monkeypatch.setattr(store, "ready_events", read)
        return joined

    monkeypatch.setattr(store, "ready_events", erase_after_reading)
    assert service.learner.step() == 0  # the snapshot was refused: an event changed under it
    assert service.learner.step() == 2  # relearned from the last snapshot, without the erased user's events
    assert client.get("/personalizer/v1.0/status").json["model"]["eventsLearned"] == 2


def test_the_next_generator_training_no_longer_sees_the_user(make_app: Any, clock: Any, database_url: str) -> None:
    client, service = setup(make_app, clock, database_url=database_url, generators="popular")
    items = [{"id": f"item-{a}", "features": {"title": a}} for a in "abcd"]
    assert client.post("/personalizer/v1.0/catalog/items", json={"items": items}).status_code == 200
    populate(client, ERASE, "gone")
    assert client.post("/personalizer/v1.0/interactions", json={"interactions": [
        {"userId": KEEP, "itemId": "item-c"}]}).status_code == 201
    trained = client.post("/personalizer/v1.0/generators/train").json
    assert trained["users"] == 2
    assert client.delete(f"{USERS}/{ERASE}").status_code == 200
    trained = client.post("/personalizer/v1.0/generators/train").json
    assert trained["users"] == 1 and trained["interactions"] == 1
    with service.db.read() as session:
        data = load_training_data(session)
    assert data.user_ids == (KEEP,)
    assert len(data.values) == 1


@pytest.mark.parametrize(("path", "problem"), [
    ("%20lead", "whitespace"), ("trail%20", "whitespace"), ("a%01b", "control characters"), ("x" * 257, "longer than 256"),
])
def test_malformed_user_ids_are_400_naming_the_field(make_app: Any, path: str, problem: str) -> None:
    client = make_app(start=False).test_client()
    for method in ("GET", "DELETE"):
        response = client.open(f"{USERS}/{path}", method=method)
        assert response.status_code == 400, response.json
        assert response.json["error"]["target"] == "userId" and problem in response.json["error"]["message"]


def test_user_ids_with_slashes_and_the_preview_prefix(make_app: Any, clock: Any) -> None:
    client, _ = setup(make_app, clock)
    assert client.post(RANK, json={"userId": "tenant/42", "actions": ACTIONS}).status_code == 201
    assert client.get(f"{USERS}/tenant%2F42").json["userId"] == "tenant/42"
    assert client.get("/personalizer/users/tenant/42").status_code == 200
    assert client.delete(f"{USERS}/tenant/42", json={"force": True}).status_code == 400  # a body is never ignored
    assert client.delete(f"{USERS}/tenant/42").json["deleted"]["events"] == 1
    assert client.get(f"{USERS}/tenant").status_code == 404


def test_cli_exports_and_erases(make_app: Any, clock: Any, database_url: str, tmp_path: Any) -> None:
    client, service = setup(make_app, clock, database_url=database_url)
    populate(client, ERASE, "gone")
    url = service.settings.resolved_database_url
    runner = CliRunner()
    exported = runner.invoke(cli, ["users", "export", ERASE, "--database-url", url, "-o", str(tmp_path / "u.json")])
    assert exported.exit_code == 0, exported.output
    data = json.loads((tmp_path / "u.json").read_text())
    assert data == client.get(f"{USERS}/{ERASE}").json
    deleted = runner.invoke(cli, ["users", "delete", ERASE, "--database-url", url])
    assert deleted.exit_code == 0, deleted.output
    assert json.loads(deleted.output)["deleted"]["events"] == 4
    with service.db.read() as session:
        assert session.execute(select(Event).where(Event.user_id == ERASE)).first() is None
    for args in (["users", "delete", ERASE], ["users", "export", ERASE], ["users", "export", " x"]):
        failed = runner.invoke(cli, [*args, "--database-url", url])
        assert failed.exit_code != 0
        assert failed.output.startswith("Error: ") and len(failed.output.strip().splitlines()) == 1, failed.output
    assert "no events or interactions are stored" in runner.invoke(cli, ["users", "delete", ERASE, "--database-url", url]).output


@pytest.fixture(scope="module")
def property_db(tmp_path_factory: Any) -> Any:
    """One migrated SQLite store for every example (each empties it)."""
    db = Database(f"sqlite:///{tmp_path_factory.mktemp('userdata') / 'p.db'}")
    db.upgrade()
    yield db
    db.dispose()


_USER = st.sampled_from(["u0", "u1", "u/2", None])


@settings(max_examples=40, deadline=None)
@given(events=st.lists(st.tuples(_USER, st.integers(0, 3)), max_size=20),
       interactions=st.lists(st.sampled_from(["u0", "u1", "u/2"]), max_size=10), victim=st.sampled_from(["u0", "u1", "u/2"]))
def test_erasing_one_user_removes_exactly_its_rows(property_db: Any, events: list[Any], interactions: list[str],
                                                   victim: str) -> None:
    db = property_db
    with db.transaction() as connection:
        for table in (Reward, EventExample, Event, Interaction):
            connection.execute(delete(table))
        for i, (user, rewards) in enumerate(events):
            store.insert_event(connection, {
                "event_id": f"e{i}", "created_at": 1.0, "user_id": user, "example": '{"x": 1}', "action_ids": ["a"],
                "excluded_ids": [], "ranking": [0], "probabilities": [1.0], "chosen_index": 0, "probability": 1.0,
                "model_version": 0, "extra": None, "deferred": False, "activated_at": 1.0, "wait_until": 1e12, "ready_at": 1e12,
            })
            for _ in range(rewards):
                store.add_reward(connection, f"e{i}", 1.0, 2.0, "sum")  # a userId's reward is an interaction too
        for user in interactions:
            connection.execute(insert(Interaction).values(user_id=user, item_id="i", type="view", value=1.0, timestamp=1.0))
        before = {t.__tablename__: connection.execute(select(func.count()).select_from(t)).scalar()
                  for t in (Event, EventExample, Reward, Interaction)}
        exported = export_user(connection, victim)
    mine = [(i, r) for i, (u, r) in enumerate(events) if u == victim]
    expected = {"events": len(mine), "eventExamples": len(mine), "rewards": sum(r for _, r in mine),
                "interactions": interactions.count(victim) + sum(r for _, r in mine)}
    with db.transaction() as connection:
        deleted = delete_user(connection, victim)
    if not any(expected.values()):
        assert deleted is None and exported is None
        return
    assert deleted == expected
    assert exported is not None and len(exported["events"]) == len(mine)
    assert len(exported["interactions"]) == expected["interactions"]
    with db.reading() as connection:
        after = {t.__tablename__: connection.execute(select(func.count()).select_from(t)).scalar()
                 for t in (Event, EventExample, Reward, Interaction)}
        assert connection.execute(select(func.count()).select_from(Event).where(Event.user_id == victim)).scalar() == 0
        assert connection.execute(select(func.count()).select_from(Interaction).where(Interaction.user_id == victim)).scalar() == 0
    assert after == {"events": before["events"] - expected["events"], "event_examples": before["event_examples"] - expected["eventExamples"],
                     "rewards": before["rewards"] - expected["rewards"], "interactions": before["interactions"] - expected["interactions"]}
