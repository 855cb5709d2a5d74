"""Rank over HTTP (Flask test client, real VW, SQLite and PostgreSQL)."""

import uuid
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from personalize.models import Event

RANK = "/personalizer/v1.0/rank"

feature_values = st.one_of(
    st.text(max_size=8), st.integers(-1000, 1000), st.floats(-1e6, 1e6, allow_nan=False), st.booleans()
)
feature_objects = st.dictionaries(
    st.text(alphabet="abcdefgh", min_size=1, max_size=5),
    st.one_of(feature_values, st.dictionaries(st.text(alphabet="xyz", min_size=1, max_size=3), feature_values, max_size=3)),
    max_size=4,
)


@st.composite
def rank_requests(draw: Any) -> dict[str, Any]:
    ids = draw(st.lists(st.text(alphabet="abcdefghij0123456789", min_size=1, max_size=6), min_size=1, max_size=12, unique=True))
    excluded = draw(st.lists(st.sampled_from(ids), unique=True, max_size=len(ids) - 1)) if len(ids) > 1 else []
    return {
        "contextFeatures": [{"user": draw(feature_objects)}, {"ctx": draw(feature_objects)}],
        "actions": [{"id": i, "features": [{"item": draw(feature_objects)}]} for i in ids],
        "excludedActions": excluded,
        "eventId": uuid.uuid4().hex,
    }


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=rank_requests())
def test_rank_properties(client: Any, app: Any, body: dict[str, Any]) -> None:
    response = client.post(RANK, json=body)
    assert response.status_code == 201, response.json
    out = response.json
    ranking = out["ranking"]
    kept = [a["id"] for a in body["actions"] if a["id"] not in body["excludedActions"]]
    assert sorted(r["id"] for r in ranking) == sorted(kept)  # a permutation of the non-excluded actions
    assert out["rewardActionId"] == ranking[0]["id"] not in body["excludedActions"]
    probabilities = [r["probability"] for r in ranking]
    assert all(p >= 0 for p in probabilities)
    assert abs(sum(probabilities) - 1.0) < 1e-9
    assert ranking[0]["probability"] > 0
    with app.extensions["personalize"].sessions() as session:  # every ranked event is in the store
        event = session.execute(select(Event).where(Event.event_id == body["eventId"])).scalar_one()
    assert event.probability == ranking[0]["probability"]
    assert event.action_ids[event.chosen_index] == out["rewardActionId"]


def test_same_event_id_and_model_give_same_choice(make_app: Any, tmp_path: Any) -> None:
    body = {"actions": [{"id": str(i), "features": [{"x": {"v": i}}]} for i in range(10)], "eventId": "fixed"}
    answers = [
        make_app(start=False, exploration=0.5, database_url=f"sqlite:///{tmp_path}/{name}.db").test_client().post(RANK, json=body).json
        for name in ("one", "two")
    ]
    assert answers[0] == answers[1]
    assert answers[0]["ranking"][0]["probability"] > 0


def test_event_id_is_generated_when_absent(client: Any) -> None:
    out = client.post(RANK, json={"actions": [{"id": "a"}, {"id": "b"}]}).json
    assert len(out["eventId"]) == 32


def test_preview_api_path(client: Any) -> None:
    response = client.post(RANK + "?api-version=2022-09-01-preview".replace("/v1.0", ""), json={"actions": [{"id": "a"}]})
    assert response.status_code == 201
    response = client.post("/personalizer/rank?api-version=2022-09-01-preview", json={"actions": [{"id": "a"}]})
    assert response.status_code == 201


def test_every_acknowledged_rank_is_stored(client: Any, app: Any) -> None:
    ids = [client.post(RANK, json={"actions": [{"id": "a"}, {"id": "b"}]}).json["eventId"] for _ in range(30)]
    with app.extensions["personalize"].sessions() as session:
        stored = session.execute(select(func.count()).select_from(Event).where(Event.event_id.in_(ids))).scalar()
    assert stored == 30
