"""Rank by userId with no actions: generated candidates, ranked by the bandit, through HTTP."""

from collections import Counter
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from personalize.models import Event, Interaction

RANK = "/personalizer/v1.0/rank"
GENRES = ["Comedy", "Drama", "Horror", "Action", "Romance"]


def load_catalog(client: Any, items: int = 60, users: int = 20) -> None:
    rows = [{"id": f"m{i}", "features": {"title": f"Movie {i} {GENRES[i % 5]}", "genres": [GENRES[i % 5]], "year": 1980 + i % 40}}
            for i in range(items)]
    assert client.post("/personalizer/v1.0/catalog/items", json={"items": rows}).status_code == 200
    interactions = [
        {"userId": f"u{u}", "itemId": f"m{(u % 5) + 5 * k}", "type": "click", "value": 1, "timestamp": 1_700_000_000 + k}
        for u in range(users) for k in range(6)
    ]
    interactions += [  # a user who has seen almost the whole catalog
        {"userId": "binger", "itemId": f"m{i}", "type": "view", "value": 1, "timestamp": 1_700_000_000 + i} for i in range(items - 3)
    ]
    assert client.post("/personalizer/v1.0/interactions", json={"interactions": interactions}).status_code == 201


@pytest.fixture
def generated(make_app: Any, database_url: str) -> tuple[Any, Any]:
    app = make_app(start=False, database_url=database_url, generator_refresh_interval=0)
    client = app.test_client()
    load_catalog(client)
    return client, app.extensions["personalize"]


@pytest.mark.parametrize("user", ["u3", "stranger", "binger"])
def test_rank_by_user(generated: tuple[Any, Any], user: str) -> None:
    client, service = generated
    response = client.post(RANK, json={"userId": user, "contextFeatures": [{"device": {"kind": "tv"}}], "numCandidates": 10})
    assert response.status_code == 201, response.json
    ranking = response.json["ranking"]
    assert 1 <= len(ranking) <= 10
    assert len({r["id"] for r in ranking}) == len(ranking)
    assert abs(sum(r["probability"] for r in ranking) - 1) < 1e-9
    assert all(r["generators"] and all("name" in g for g in r["generators"]) for r in ranking)
    event_id = response.json["eventId"]
    assert client.post(f"/personalizer/v1.0/events/{event_id}/reward", json={"value": 1.0}).status_code == 204
    with service.sessions() as session:  # the reward became an interaction the generators learn from
        event = session.execute(select(Event).where(Event.event_id == event_id)).scalar_one()
        interaction = session.execute(select(Interaction).where(Interaction.event_id == event_id)).scalar_one()
    assert event.user_id == user and set(event.extra["generators"]) == {r["id"] for r in ranking}
    assert (interaction.user_id, interaction.item_id, interaction.type) == (user, response.json["rewardActionId"], "reward")


def test_generator_errors(generated: tuple[Any, Any]) -> None:
    client, _ = generated
    response = client.post(RANK, json={"userId": "u1", "generators": ["no_such_generator"]})
    assert response.status_code == 422 and response.json["error"]["target"] == "generators"
    assert client.post(RANK, json={"userId": "u1", "numCandidates": 0}).status_code == 400
    assert client.post(RANK, json={"userId": "u1", "generators": "popular"}).status_code == 400


def test_empty_catalog_is_a_clear_422(make_app: Any) -> None:
    client = make_app(start=False).test_client()
    response = client.post(RANK, json={"userId": "u1"})
    assert response.status_code == 422 and response.json["error"]["code"] == "NoCandidates"


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(event_id=st.text(alphabet="abcdef0123456789-", min_size=1, max_size=20), user=st.sampled_from(["u1", "u7", "stranger"]))
def test_logged_probabilities_are_the_sampled_distribution(make_app: Any, tmp_path_factory: Any, event_id: str, user: str) -> None:
    """Candidates, serendipity draw and choice are all functions of the event id; the logged
    probabilities are exactly the distribution the choice was drawn from."""
    if not hasattr(test_logged_probabilities_are_the_sampled_distribution, "app"):
        app = make_app(start=False, serendipity=0.3, generator_refresh_interval=0,
                       database_url=f"sqlite:///{tmp_path_factory.mktemp('gen')}/g.db")
        load_catalog(app.test_client())
        test_logged_probabilities_are_the_sampled_distribution.app = app  # type: ignore[attr-defined]
    app = test_logged_probabilities_are_the_sampled_distribution.app  # type: ignore[attr-defined]
    service = app.extensions["personalize"]
    body = {"userId": user, "numCandidates": 8, "eventId": f"{event_id}-{user}"}
    response = app.test_client().post(RANK, json=body)
    if response.status_code == 409:  # Hypothesis replays an example: same event id, already logged
        return
    assert response.status_code == 201
    with service.sessions() as session:
        event = session.execute(select(Event).where(Event.event_id == body["eventId"])).scalar_one()
    # Re-derive the draw from the logged example alone: same model, same event id.
    again = service.ranker.decide(event.example, event.event_id)
    assert again.ranking == event.ranking and again.probabilities == event.probabilities
    assert event.probability == event.probabilities[0] > 0
    assert abs(sum(event.probabilities) - 1) < 1e-9


def test_choice_frequencies_match_logged_probabilities(make_app: Any) -> None:
    app = make_app(start=False, serendipity=0.0, exploration=0.3, generator_refresh_interval=0)
    client = app.test_client()
    load_catalog(client)
    chosen: Counter[str] = Counter()
    logged: dict[str, float] = {}
    n = 1500
    for i in range(n):
        out = client.post(RANK, json={"userId": "u2", "numCandidates": 5, "eventId": f"freq-{i}"}).json
        chosen[out["rewardActionId"]] += 1
        for entry in out["ranking"]:
            logged.setdefault(entry["id"], entry["probability"])
    for item, p in logged.items():  # untrained model, fixed candidate set: one distribution
        assert abs(chosen[item] / n - p) < 4 * (p * (1 - p) / n) ** 0.5 + 0.005, (item, chosen[item] / n, p)


def test_service_loads_generators_at_start(make_app: Any, tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path}/start.db"
    first = make_app(start=False, database_url=url)
    load_catalog(first.test_client())
    first.extensions["personalize"].close()
    service = make_app(start=True, database_url=url, generator_refresh_interval=0).extensions["personalize"]
    deadline = time.time() + 60
    while not service._candidates_loaded and time.time() < deadline:  # loaded in the background, no Rank call needed
        time.sleep(0.05)
    assert service._candidates_loaded


def test_train_endpoint_refits_the_generators(generated: tuple[Any, Any]) -> None:
    client, _ = generated
    fresh = {"userId": "stranger", "generators": ["fresh"], "numCandidates": 5}
    assert client.post(RANK, json=fresh).status_code == 201  # generators loaded before the new item exists
    new_item = {"id": "brand-new", "features": {"title": "Brand New", "genres": ["Drama"]}, "createdAt": 4_000_000_000}
    assert client.put("/personalizer/v1.0/catalog/items/brand-new", json=new_item).status_code == 201
    before = {r["id"] for r in client.post(RANK, json=fresh).json["ranking"]}
    response = client.post("/personalizer/v1.0/generators/train", json={"generators": ["fresh", "popular"]})
    assert response.status_code == 200, response.json
    assert set(response.json["trained"]) == {"fresh", "popular"} and response.json["items"] == 61
    after = {r["id"] for r in client.post(RANK, json=fresh).json["ranking"]}
    assert "brand-new" not in before and "brand-new" in after
    assert client.post("/personalizer/v1.0/generators/train", json={"generators": ["nope"]}).status_code == 422
    assert client.post("/personalizer/v1.0/generators/train", data="[1]", content_type="application/json").status_code == 400


_ONE_CLICK = [{"userId": "u1", "itemId": "i1", "type": "click"}]


@pytest.mark.parametrize(("items", "interactions"), [
    pytest.param([{"id": "i1", "features": {"price": 3}}, {"id": "i2", "features": {"price": 5.5}}], _ONE_CLICK,
                 id="numbers only, one interaction"),
    pytest.param([{"id": "i1", "features": {"title": "hello world"}}, {"id": "i2", "features": {"title": "other"}}],
                 _ONE_CLICK, id="text whose every term is in one item"),
    pytest.param([{"id": "i1", "features": {"tags": ["a", "b"]}}, {"id": "i2", "features": {"tags": ["c"]}}], _ONE_CLICK,
                 id="lists only"),
    pytest.param([{"id": "i1", "features": {}}, {"id": "i2", "features": {}}], _ONE_CLICK, id="no features"),
    pytest.param([{"id": "i1", "features": {"new": True}}, {"id": "i2", "features": {"new": False}}], _ONE_CLICK,
                 id="booleans only"),
    pytest.param([{"id": "i1", "features": {"price": 3}}], _ONE_CLICK, id="one item, seen"),
    pytest.param([{"id": "i1", "features": {"price": 3}}], [], id="one item, no interactions"),
    pytest.param([{"id": "i1", "features": {"t": "x"}}, {"id": "i2", "features": {"t": "y"}}],
                 [{"userId": "u1", "itemId": "i1", "value": -1}], id="only a negative interaction"),
    pytest.param([], [], id="empty catalog"),
])
def test_tiny_catalogs_train_and_rank_by_user(make_app: Any, items: list[dict[str, Any]],
                                              interactions: list[dict[str, Any]]) -> None:
    """What a new user tries first: a 500 in train and in Rank by userId for numbers-only and tiny catalogs
    before (TF-IDF with an empty vocabulary). A generator with nothing to learn from proposes nothing."""
    client = make_app(start=False, generator_refresh_interval=0).test_client()
    if items:
        assert client.post("/personalizer/v1.0/catalog/items", json={"items": items}).status_code == 200
    if interactions:
        assert client.post("/personalizer/v1.0/interactions", json={"interactions": interactions}).status_code == 201
    trained = client.post("/personalizer/v1.0/generators/train")
    assert trained.status_code == 200, trained.json
    names = list(trained.json["trained"])
    for body in ({"userId": "u1"}, {"userId": "stranger"}, {"userId": "u1", "contextFeatures": [{"currentItemId": "i1"}]},
                 *({"userId": "u1", "generators": [name]} for name in names)):
        response = client.post(RANK, json=body)
        assert response.status_code in (201, 422), (body, response.json)
        if response.status_code == 201:
            assert {r["id"] for r in response.json["ranking"]} <= {item["id"] for item in items}
            reward = client.post(f"/personalizer/v1.0/events/{response.json['eventId']}/reward", json={"value": 1})
            assert reward.status_code == 204
        else:
            assert response.json["error"]["code"] == "NoCandidates", response.json
    if len(items) > 1 or (items and not interactions):  # something unseen to propose
        assert client.post(RANK, json={"userId": "u1"}).status_code == 201


# -- filter, excludedActions, includeItemFeatures, sessionItems -------------------------------------------
from personalize.filters import CatalogColumns, parse_filter  # noqa: E402

CATALOG_IDS = [f"m{i}" for i in range(60)]


def _catalog_features(service: Any) -> dict[str, dict[str, Any]]:
    from personalize.models import Item

    with service.sessions() as session:
        return {row.id: row.features for row in session.execute(select(Item.id, Item.features))}


def _seen(service: Any, user: str | None) -> set[str]:
    with service.sessions() as session:
        return set(session.scalars(select(Interaction.item_id).where(Interaction.user_id == user))) if user else set()


rank_filters = st.dictionaries(
    st.sampled_from(["genres", "year", "title"]),
    st.one_of(
        st.sampled_from(GENRES),
        st.fixed_dictionaries({"$in": st.lists(st.sampled_from(GENRES), max_size=3)}),
        st.fixed_dictionaries({"$nin": st.lists(st.sampled_from(GENRES), max_size=2)}),
        st.dictionaries(st.sampled_from(["$gt", "$gte", "$lt", "$lte"]), st.integers(1975, 2025), min_size=1, max_size=2),
        st.fixed_dictionaries({"$ne": st.sampled_from(GENRES + ["Movie 3 Action"])}),
    ),
    max_size=2,
)
visitors = st.sampled_from([{"userId": "u3"}, {"userId": "stranger"}, {"userId": "binger"}, {"sessionItems": ["m1", "m6"]},
                            {"userId": "u2", "sessionItems": ["m7", "m40"]}])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(item_filter=rank_filters, excluded=st.lists(st.sampled_from(CATALOG_IDS), max_size=10, unique=True),
       n=st.integers(1, 15), visitor=visitors)
def test_generated_candidates_satisfy_the_filter_and_the_exclusions(generated: tuple[Any, Any], item_filter: dict[str, Any],
                                                                    excluded: list[str], n: int, visitor: dict[str, Any]) -> None:
    """Every returned item satisfies the filter, none is excluded, seen or in the session, and the answer has
    numCandidates items whenever that many items pass: exclusions and the filter apply before the cut."""
    client, service = generated
    catalog = _catalog_features(service)
    compiled = parse_filter(item_filter)
    columns = CatalogColumns(CATALOG_IDS, [catalog[i] for i in CATALOG_IDS])
    passing = {i for i, ok in zip(CATALOG_IDS, compiled.mask(columns)) if ok} if compiled else set(CATALOG_IDS)
    eligible = passing - set(excluded) - _seen(service, visitor.get("userId")) - set(visitor.get("sessionItems", ()))
    body = {**visitor, "numCandidates": n, "filter": item_filter, "excludedActions": excluded, "includeItemFeatures": True}
    response = client.post(RANK, json=body)
    if not eligible:
        assert response.status_code == 422 and response.json["error"]["code"] == "NoCandidates", response.json
        return
    assert response.status_code == 201, response.json
    ranking = response.json["ranking"]
    ids = [entry["id"] for entry in ranking]
    assert set(ids) <= eligible
    assert len(ids) == min(n, len(eligible)), (len(ids), n, len(eligible))
    assert all(entry["features"] == catalog[entry["id"]] for entry in ranking)
    with service.sessions() as session:
        event = session.execute(select(Event).where(Event.event_id == response.json["eventId"])).scalar_one()
    assert sorted(event.action_ids) == sorted(ids)  # the logged candidate set is what was ranked
    assert event.extra.get("filter") == (item_filter or None) and event.extra.get("sessionItems") == visitor.get("sessionItems")


def test_excluded_actions_do_not_shrink_the_answer(generated: tuple[Any, Any]) -> None:
    client, _ = generated
    first = client.post(RANK, json={"userId": "u4", "numCandidates": 5}).json["ranking"]
    excluded = [entry["id"] for entry in first[:3]]
    again = client.post(RANK, json={"userId": "u4", "numCandidates": 5, "excludedActions": excluded})
    assert again.status_code == 201, again.json
    ids = [entry["id"] for entry in again.json["ranking"]]
    assert len(ids) == 5 and not set(ids) & set(excluded)
    everything = client.post(RANK, json={"userId": "binger", "excludedActions": CATALOG_IDS})
    assert everything.status_code == 422 and everything.json["error"]["target"] == "userId"


def test_a_session_ranks_like_its_items_for_item_to_item_generators(generated: tuple[Any, Any]) -> None:
    """sessionItems ["m1"] asks item_knn what currentItemId "m1" does; an anonymous event's reward is no interaction."""
    client, service = generated
    by_session = client.post(RANK, json={"sessionItems": ["m1"], "generators": ["item_knn"], "numCandidates": 8})
    by_current = client.post(RANK, json={"userId": "stranger", "generators": ["item_knn"], "numCandidates": 8,
                                         "contextFeatures": [{"currentItemId": "m1"}]})
    assert by_session.status_code == by_current.status_code == 201, (by_session.json, by_current.json)
    assert {e["id"] for e in by_session.json["ranking"]} == {e["id"] for e in by_current.json["ranking"]}
    several = client.post(RANK, json={"sessionItems": ["m1", "m2", "m2"], "numCandidates": 10})
    assert several.status_code == 201 and not {"m1", "m2"} & {e["id"] for e in several.json["ranking"]}
    assert len(several.json["ranking"]) == 10
    event_id = several.json["eventId"]
    assert client.post(f"/personalizer/v1.0/events/{event_id}/reward", json={"value": 1.0}).status_code == 204
    with service.sessions() as session:
        assert session.execute(select(Event.user_id).where(Event.event_id == event_id)).scalar_one() is None
        assert session.execute(select(Interaction).where(Interaction.event_id == event_id)).first() is None


def test_session_items_the_generators_do_not_know_yet_are_accepted(generated: tuple[Any, Any]) -> None:
    client, _ = generated
    assert client.post(RANK, json={"userId": "u1"}).status_code == 201  # generators loaded before the item exists
    assert client.put("/personalizer/v1.0/catalog/items/late", json={"features": {"title": "Late"}}).status_code == 201
    response = client.post(RANK, json={"sessionItems": ["late", "m3"], "numCandidates": 4})
    assert response.status_code == 201, response.json
    assert not {"late", "m3"} & {e["id"] for e in response.json["ranking"]}


@pytest.mark.parametrize(("body", "status", "target"), [
    ({"userId": "u1", "filter": {"year": {"$foo": 1990}}}, 400, "filter.year.$foo"),
    ({"userId": "u1", "filter": {"genres": {"$in": "Comedy"}}}, 400, "filter.genres.$in"),
    ({"userId": "u1", "filter": {"year": {"$gt": [1]}}}, 400, "filter.year.$gt"),
    ({"userId": "u1", "filter": {"$or": []}}, 400, "filter.$or"),
    ({"userId": "u1", "filter": "genres=Comedy"}, 400, "filter"),
    ({"userId": "u1", "filter": {"genre": "Comedy"}}, 422, "filter.genre"),
    ({"userId": "u1", "filter": {"genres": "Western"}}, 422, "filter"),
    ({"sessionItems": ["nope"]}, 400, "sessionItems[0]"),
    ({"sessionItems": ["m1", "m2", "gone", "m3"]}, 400, "sessionItems[2]"),
    ({"sessionItems": []}, 400, "sessionItems"),
    ({"sessionItems": "m1"}, 400, "sessionItems"),
    ({"sessionItems": ["m1", 3]}, 400, "sessionItems[1]"),
    ({"sessionItems": [f"m{i}" for i in range(101)]}, 400, "sessionItems"),
    ({"includeItemFeatures": True}, 400, "actions"),
    ({"userId": "u1", "includeItemFeatures": "yes"}, 400, "includeItemFeatures"),
    ({"actions": [{"id": "a"}], "filter": {"genres": "Comedy"}}, 400, "filter"),
    ({"actions": [{"id": "a"}], "sessionItems": ["m1"]}, 400, "sessionItems"),
    ({"actions": [{"id": "a"}], "includeItemFeatures": True}, 400, "includeItemFeatures"),
    ({"userId": "u1", "contextFeatures": [{"a": 1}, {"timeZone": "Mars/Olympus"}]}, 400, "contextFeatures[1].timeZone"),
    ({"userId": "u1", "contextFeatures": [{"timeZone": 3}]}, 400, "contextFeatures[0].timeZone"),
])
def test_bad_generated_rank_requests_name_the_field_and_store_nothing(generated: tuple[Any, Any], body: dict[str, Any],
                                                                      status: int, target: str) -> None:
    client, service = generated
    response = client.post(RANK, json=body)
    assert (response.status_code, response.json["error"]["target"]) == (status, target), response.json
    assert target.split("[")[0].split(".")[0] in response.json["error"]["message"]
    with service.sessions() as session:
        assert session.execute(select(Event)).first() is None
