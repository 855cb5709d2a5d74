"""Drive Microsoft's own Personalizer SDKs against a live `personalize` server.

Contract: docs/personalizer-compat.md.

* old SDK: azure-cognitiveservices-personalizer==0.1.1 (msrest), paths /personalizer/v1.0/...
* new SDK: azure-ai-personalizer==1.0.0b1 (azure-core), paths /personalizer/...?api-version=2022-09-01-preview

The `live_server` fixture (tests/conftest.py) yields the base URL of a running
server, e.g. "http://127.0.0.1:PORT".
"""

from __future__ import annotations

import math
import uuid

import pytest
import requests

from azure.cognitiveservices.personalizer import PersonalizerClient as OldPersonalizerClient
from azure.cognitiveservices.personalizer.models import (
    ErrorResponseException,
    RankableAction,
    RankRequest,
)
from msrest.authentication import CognitiveServicesCredentials
from msrest.exceptions import HttpOperationError

from azure.ai.personalizer import PersonalizerClient as NewPersonalizerClient
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import HttpResponseError

API_KEY = "any-key-is-accepted"

CONTEXT = [
    {"user": {"profileType": "AnonymousUser", "latLong": "47.6,-122.1"}},
    {"environment": {"dayOfMonth": "28", "monthOfYear": "8", "weather": "Sunny"}},
    {"device": {"mobile": True, "windows": True}},
    {"recentActivity": {"itemsInCart": 3}},
]
ACTIONS = [
    {"id": "NewsArticle", "features": [{"type": "News"}, {"length": 120}]},
    {"id": "SportsArticle", "features": [{"type": "Sports"}]},
    {"id": "EntertainmentArticle", "features": [{"type": "Entertainment"}, {"rating": 4.5}]},
    {"id": "ScienceArticle", "features": [{"type": "Science"}]},
]
EXCLUDED = ["SportsArticle"]
ACTION_IDS = {a["id"] for a in ACTIONS}


def _event_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4()}"


# --------------------------------------------------------------------------- clients


@pytest.fixture
def old_client(live_server):
    return OldPersonalizerClient(live_server, CognitiveServicesCredentials(API_KEY))


@pytest.fixture
def new_client(live_server):
    # retry_total=0: a 5xx fails fast instead of being retried with backoff.
    client = NewPersonalizerClient(live_server, AzureKeyCredential(API_KEY), retry_total=0)
    yield client
    client.close()


def _old_actions():
    return [RankableAction(id=a["id"], features=a["features"]) for a in ACTIONS]


# --------------------------------------------------------------------------- checks


def _check_ranking(event_id, reward_action_id, ranking, expected_event_id=None, excluded=()):
    """ranking: list of (id, probability) tuples."""
    assert isinstance(event_id, str) and event_id
    if expected_event_id is not None:
        assert event_id == expected_event_id
    assert ranking, "ranking must not be empty"
    ids = [r[0] for r in ranking]
    assert len(ids) == len(set(ids)), f"duplicate ids in ranking: {ids}"
    assert set(ids) <= ACTION_IDS
    # every non-excluded action is ranked
    assert ACTION_IDS - set(excluded) <= set(ids)
    assert reward_action_id == ranking[0][0]
    assert reward_action_id not in excluded
    for aid, p in ranking:
        assert p is not None and 0.0 <= p <= 1.0 + 1e-9, (aid, p)
        if aid in excluded:
            assert p == pytest.approx(0.0, abs=1e-9), f"excluded action {aid} has probability {p}"
    total = math.fsum(p for _, p in ranking)
    assert total == pytest.approx(1.0, abs=1e-3), f"probabilities sum to {total}"


# --------------------------------------------------------------------------- old SDK (v1.0)


def test_old_sdk_rank_and_reward(old_client):
    event_id = _event_id("old")
    req = RankRequest(
        actions=_old_actions(),
        context_features=CONTEXT,
        excluded_actions=EXCLUDED,
        event_id=event_id,
        defer_activation=False,
    )
    resp = old_client.rank(req)  # raises unless the server answers 201
    ranking = [(r.id, r.probability) for r in resp.ranking]
    _check_ranking(resp.event_id, resp.reward_action_id, ranking, expected_event_id=event_id, excluded=EXCLUDED)

    # 204 expected; anything else raises HttpOperationError
    assert old_client.events.reward(resp.event_id, 1.0) is None


def test_old_sdk_deferred_rank_then_activate(old_client):
    # no eventId: the server must generate one
    req = RankRequest(actions=_old_actions(), context_features=CONTEXT, defer_activation=True)
    resp = old_client.rank(req)
    ranking = [(r.id, r.probability) for r in resp.ranking]
    _check_ranking(resp.event_id, resp.reward_action_id, ranking)

    assert old_client.events.activate(resp.event_id) is None
    assert old_client.events.reward(resp.event_id, 1.0) is None


def test_old_sdk_rank_empty_actions_is_400(old_client):
    with pytest.raises(ErrorResponseException) as excinfo:
        old_client.rank(RankRequest(actions=[], context_features=CONTEXT, event_id=_event_id("old-empty")))
    err = excinfo.value
    assert err.response.status_code == 400
    # the nested {"error": {"code", "message"}} body was parsed
    assert err.error is not None and err.error.error is not None
    assert err.error.error.code
    assert err.error.error.message
    assert err.error.error.message in str(err)


def test_old_sdk_duplicate_event_id_is_rejected(old_client):
    event_id = _event_id("old-dup")
    old_client.rank(RankRequest(actions=_old_actions(), event_id=event_id))
    with pytest.raises(HttpOperationError) as excinfo:
        old_client.rank(RankRequest(actions=_old_actions(), event_id=event_id))
    err = excinfo.value
    assert isinstance(err, ErrorResponseException)
    assert err.response.status_code in (400, 409)
    assert err.error.error.message
    assert err.error.error.message in str(err)


# --------------------------------------------------------------------------- new SDK (2022-09-01-preview)


def test_new_sdk_rank_and_reward(new_client):
    event_id = _event_id("new")
    resp = new_client.rank(
        {
            "contextFeatures": CONTEXT,
            "actions": ACTIONS,
            "excludedActions": EXCLUDED,
            "eventId": event_id,
            "deferActivation": False,
        }
    )
    ranking = [(r["id"], r["probability"]) for r in resp["ranking"]]
    _check_ranking(resp["eventId"], resp["rewardActionId"], ranking, expected_event_id=event_id, excluded=EXCLUDED)

    assert new_client.reward(event_id, {"value": 1.0}) is None


def test_new_sdk_deferred_rank_then_activate(new_client):
    event_id = _event_id("new-deferred")
    resp = new_client.rank(
        {"contextFeatures": CONTEXT, "actions": ACTIONS, "eventId": event_id, "deferActivation": True}
    )
    ranking = [(r["id"], r["probability"]) for r in resp["ranking"]]
    _check_ranking(resp["eventId"], resp["rewardActionId"], ranking, expected_event_id=event_id)

    assert new_client.activate(event_id) is None
    assert new_client.reward(event_id, {"value": 1.0}) is None


def test_new_sdk_rank_without_event_id_generates_one(new_client):
    resp = new_client.rank({"actions": ACTIONS})  # minimal request, nothing optional
    ranking = [(r["id"], r["probability"]) for r in resp["ranking"]]
    _check_ranking(resp["eventId"], resp["rewardActionId"], ranking)


def test_new_sdk_rank_empty_actions_is_400(new_client):
    with pytest.raises(HttpResponseError) as excinfo:
        new_client.rank({"contextFeatures": CONTEXT, "actions": [], "eventId": _event_id("new-empty")})
    err = excinfo.value
    assert err.status_code == 400
    assert err.error is not None, "error body must be {'error': {'code': ..., 'message': ...}}"
    assert err.error.code
    assert err.error.message
    assert err.error.message in str(err)


def test_new_sdk_duplicate_event_id_is_rejected(new_client):
    event_id = _event_id("new-dup")
    new_client.rank({"actions": ACTIONS, "eventId": event_id})
    with pytest.raises(HttpResponseError) as excinfo:
        new_client.rank({"actions": ACTIONS, "eventId": event_id})
    err = excinfo.value
    assert err.status_code in (400, 409)
    assert err.error is not None
    assert err.error.message
    assert err.error.message in str(err)


# --------------------------------------------------------------------------- our JSON extension


def test_status_endpoint_after_sdk_traffic(live_server, old_client, new_client):
    old_resp = old_client.rank(RankRequest(actions=_old_actions(), context_features=CONTEXT))
    old_client.events.reward(old_resp.event_id, 1.0)
    new_resp = new_client.rank({"contextFeatures": CONTEXT, "actions": ACTIONS})
    new_client.reward(new_resp["eventId"], {"value": 0.5})

    resp = requests.get(f"{live_server}/personalizer/v1.0/status", timeout=10)
    assert resp.status_code == 200
    body = resp.json()
    assert isinstance(body, dict) and body

    # Tolerant: if the status exposes integer counters with "rank" in their key,
    # at least one of them must reflect the ranks made above.
    def _rank_counters(obj):
        if isinstance(obj, dict):
            for k, v in obj.items():
                if isinstance(v, int) and not isinstance(v, bool) and "rank" in str(k).lower():
                    yield v
                else:
                    yield from _rank_counters(v)
        elif isinstance(obj, list):
            for v in obj:
                yield from _rank_counters(v)

    counters = list(_rank_counters(body))
    if counters:
        assert max(counters) >= 1, body


# --------------------------------------------------------------------------- our Rank extensions through the SDKs


class RankByUser(RankRequest):
    """The old SDK sends what a model's _attribute_map names: a subclass carries our extensions."""

    _validation: dict = {}  # no actions: candidates are generated
    _attribute_map = {**RankRequest._attribute_map,
                      "user_id": {"key": "userId", "type": "str"},
                      "num_candidates": {"key": "numCandidates", "type": "int"},
                      "filter": {"key": "filter", "type": "object"},
                      "include_item_features": {"key": "includeItemFeatures", "type": "bool"}}

    def __init__(self, *, user_id, num_candidates=None, filter=None, include_item_features=None, **kwargs):
        super().__init__(actions=None, **kwargs)
        self.user_id, self.num_candidates = user_id, num_candidates
        self.filter, self.include_item_features = filter, include_item_features


def _load_catalog(base_url):
    items = [{"id": f"m{i}", "features": {"title": f"Movie {i}", "genres": ["Comedy" if i % 2 else "Drama"], "year": 1980 + i}}
             for i in range(30)]
    clicks = [{"userId": f"u{u}", "itemId": f"m{(u + 2 * k) % 30}"} for u in range(10) for k in range(5)]
    api = f"{base_url}/personalizer/v1.0"
    assert requests.post(f"{api}/catalog/items", json={"items": items}, timeout=30).status_code == 200
    assert requests.post(f"{api}/interactions", json={"interactions": clicks}, timeout=30).status_code == 201
    assert requests.post(f"{api}/generators/train", timeout=120).status_code == 200
    return {item["id"]: item["features"] for item in items}


def test_both_sdks_tolerate_item_features_in_the_ranking(live_server, old_client, new_client):
    """includeItemFeatures adds `features` (and generated candidates add `generators`) to each ranking entry:
    the new SDK returns the JSON as it is, the old one's msrest models keep unknown fields aside."""
    catalog = _load_catalog(live_server)
    body = {"userId": "u1", "numCandidates": 5, "filter": {"genres": "Comedy"}, "includeItemFeatures": True}
    new = new_client.rank(body)
    assert len(new["ranking"]) == 5
    for entry in new["ranking"]:
        assert entry["features"] == catalog[entry["id"]] and "Comedy" in entry["features"]["genres"]
    assert new_client.reward(new["eventId"], {"value": 1.0}) is None

    old = old_client.rank(RankByUser(user_id="u2", num_candidates=5, filter={"year": {"$gte": 1995}},
                                     include_item_features=True, event_id=_event_id("old-user")))
    assert len(old.ranking) == 5 and old.reward_action_id == old.ranking[0].id
    for entry in old.ranking:
        assert 0 < entry.probability <= 1
        assert entry.additional_properties["features"] == catalog[entry.id]
        assert entry.additional_properties["features"]["year"] >= 1995
    assert old_client.events.reward(old.event_id, 1.0) is None


# --------------------------------------------------------------------------- new SDK, multi-slot, with keys
# Microsoft's own example (MultiSlot_Rank.json in the 2022-09-01-preview REST spec).
SLOTS = [
    {"id": "Main Article", "features": [{"size": "Large", "position": "Top Middle"}],
     "excludedActions": ["SportsArticle"], "baselineAction": "EntertainmentArticle"},
    {"id": "Side Bar", "features": [{"size": "Small"}], "baselineAction": "NewsArticle"},
]
MULTI_KEY = "multi-slot-client-key"


@pytest.fixture(scope="module")
def keyed_multislot_client(tmp_path_factory):
    """azure-ai-personalizer against a `personalize serve` that requires keys."""
    from tests.conftest import LiveServer

    server = LiveServer(tmp_path_factory.mktemp("multislot"), env={"PERSONALIZE_API_KEYS": MULTI_KEY,
                                                                   "PERSONALIZE_ADMIN_KEYS": "multi-slot-admin"}).start()
    client = NewPersonalizerClient(server.url, AzureKeyCredential(MULTI_KEY), retry_total=0)
    yield client, server.url
    client.close()
    server.stop()


def test_new_sdk_rank_multi_slot_reward_and_activate(keyed_multislot_client):
    client, _ = keyed_multislot_client
    event_id = _event_id("multi")
    resp = client.rank_multi_slot({"contextFeatures": CONTEXT, "actions": ACTIONS[:3], "slots": SLOTS,
                                   "eventId": event_id, "deferActivation": False})
    assert resp["eventId"] == event_id
    assert [s["id"] for s in resp["slots"]] == ["Main Article", "Side Bar"]
    chosen = [s["rewardActionId"] for s in resp["slots"]]
    assert len(set(chosen)) == 2 and set(chosen) <= ACTION_IDS and chosen[0] != "SportsArticle"
    assert client.reward_multi_slot(event_id, {"reward": [{"slotId": "Main Article", "value": 1.0},
                                                         {"slotId": "Side Bar", "value": 0.0}]}) is None

    deferred = client.rank_multi_slot({"actions": ACTIONS, "slots": SLOTS, "deferActivation": True})
    assert deferred["eventId"]  # generated
    assert client.activate_multi_slot(deferred["eventId"]) is None
    assert client.reward_multi_slot(deferred["eventId"], {"reward": [{"slotId": "Side Bar", "value": 0.5}]}) is None


def test_new_sdk_multi_slot_errors_carry_the_field(keyed_multislot_client):
    from azure.core.exceptions import ClientAuthenticationError, ResourceExistsError, ResourceNotFoundError

    client, url = keyed_multislot_client
    bad_slots = [dict(SLOTS[0]), dict(SLOTS[1], baselineAction="EntertainmentArticle")]
    with pytest.raises(HttpResponseError) as excinfo:
        client.rank_multi_slot({"actions": ACTIONS, "slots": bad_slots})
    assert excinfo.value.status_code == 400
    assert excinfo.value.error.code == "DuplicateBaselineAction"
    assert excinfo.value.error.target == "slots[1].baselineAction"

    single = client.rank({"actions": ACTIONS})["eventId"]
    with pytest.raises(ResourceExistsError) as conflict:  # a single-slot event on the multi-slot URL
        client.reward_multi_slot(single, {"reward": [{"slotId": "Side Bar", "value": 1.0}]})
    assert conflict.value.status_code == 409 and conflict.value.error.code == "SingleSlotEvent"
    multi = client.rank_multi_slot({"actions": ACTIONS, "slots": SLOTS})["eventId"]
    with pytest.raises(ResourceExistsError):  # and the reverse
        client.reward(multi, {"value": 1.0})
    with pytest.raises(ResourceNotFoundError) as unknown_slot:
        client.reward_multi_slot(multi, {"reward": [{"slotId": "Footer", "value": 1.0}]})
    assert unknown_slot.value.status_code == 404 and unknown_slot.value.error.target == "reward[0].slotId"
    with pytest.raises(ResourceNotFoundError):
        client.activate_multi_slot(_event_id("missing"))
    with NewPersonalizerClient(url, AzureKeyCredential("wrong"), retry_total=0) as wrong:
        with pytest.raises(ClientAuthenticationError):
            wrong.rank_multi_slot({"actions": ACTIONS, "slots": SLOTS})
