"""The reward join: wait time, default reward, earliest/sum aggregation, deferred activation."""

import math
import threading
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from personalize.models import Event

RANK = "/personalizer/v1.0/rank"
ACTIONS = [{"id": "a", "features": [{"x": {"v": 1}}]}, {"id": "b", "features": [{"x": {"v": 2}}]}]


def setup(make_app: Any, clock: Any, **settings: Any) -> tuple[Any, Any]:
    app = make_app(clock=clock, start=False, reward_wait_time=10, default_reward=0.25, **settings)
    return app.test_client(), app.extensions["personalize"]


def rank(client: Any, event_id: str, **extra: Any) -> None:
    assert client.post(RANK, json={"actions": ACTIONS, "eventId": event_id, **extra}).status_code == 201


def reward(client: Any, event_id: str, value: float) -> Any:
    return client.post(f"/personalizer/v1.0/events/{event_id}/reward", json={"value": value})


def learned(service: Any, event_id: str) -> tuple[int | None, float | None]:
    with service.sessions() as session:
        event = session.execute(select(Event).where(Event.event_id == event_id)).scalar_one()
    return event.learned_version, event.learned_reward


def test_earliest_learns_at_the_first_reward(make_app: Any, clock: Any, database_url: str) -> None:
    client, service = setup(make_app, clock, database_url=database_url)
    rank(client, "e1")
    assert service.learner.step() == 0  # nothing ready: no reward, wait not over
    assert reward(client, "e1", 0.5).status_code == 204
    assert service.learner.step() == 1
    assert learned(service, "e1") == (1, 0.5)
    assert reward(client, "e1", 1.0).status_code == 204  # kept, not counted
    status = client.get("/personalizer/v1.0/status").json
    assert status["rewards"] == {"received": 2, "notCounted": 1}
    assert status["model"]["version"] == 1 and status["events"]["learned"] == 1


def test_default_reward_after_the_wait(make_app: Any, clock: Any) -> None:
    client, service = setup(make_app, clock)
    rank(client, "e1")
    clock.advance(9.9)
    assert service.learner.step() == 0
    clock.advance(0.2)
    assert service.learner.step() == 1
    assert learned(service, "e1") == (1, 0.25)


def test_reward_after_the_wait_is_refused(make_app: Any, clock: Any) -> None:
    client, service = setup(make_app, clock)
    rank(client, "e1")
    clock.advance(11)
    response = reward(client, "e1", 1.0)
    assert response.status_code == 409 and response.json["error"]["code"] == "RewardWindowClosed"


def test_sum_waits_and_adds_rewards(make_app: Any, clock: Any, database_url: str) -> None:
    client, service = setup(make_app, clock, reward_aggregation="sum", database_url=database_url)
    rank(client, "e1")
    assert reward(client, "e1", 0.5).status_code == 204
    assert reward(client, "e1", 0.25).status_code == 204
    assert service.learner.step() == 0
    clock.advance(10.5)
    assert service.learner.step() == 1
    assert learned(service, "e1") == (1, 0.75)


def test_deferred_events_learn_only_once_activated(make_app: Any, clock: Any) -> None:
    client, service = setup(make_app, clock)
    rank(client, "never", deferActivation=True)
    rank(client, "later", deferActivation=True)
    assert reward(client, "never", 1.0).status_code == 204
    assert reward(client, "later", 1.0).status_code == 204
    clock.advance(100)
    assert service.learner.step() == 0
    assert client.get("/personalizer/v1.0/status").json["events"]["deferredNotActivated"] == 2
    assert client.post("/personalizer/v1.0/events/later/activate").status_code == 204
    assert client.post("/personalizer/v1.0/events/later/activate").status_code == 204  # idempotent
    assert service.learner.step() == 1
    assert learned(service, "later") == (1, 1.0)
    assert learned(service, "never") == (None, None)


def test_unknown_events_are_404(make_app: Any, clock: Any) -> None:
    client, _ = setup(make_app, clock)
    assert reward(client, "ghost", 1.0).status_code == 404
    assert client.post("/personalizer/v1.0/events/ghost/activate").status_code == 404


def test_event_ids_with_slashes(make_app: Any, clock: Any) -> None:
    client, service = setup(make_app, clock)
    rank(client, "a/b c")
    assert client.post("/personalizer/v1.0/events/a%2Fb%20c/reward", json={"value": 1}).status_code == 204
    assert service.learner.step() == 1


def test_a_reward_reaches_the_event_whose_id_has_leading_or_double_slashes(make_app: Any, clock: Any) -> None:
    """'/x', 'x' and 'a//b' are three events: no slash merging sends one's reward to another."""
    client, service = setup(make_app, clock)
    for event_id in ("/x", "x", "a//b", "a/b"):
        rank(client, event_id)
    assert client.post("/personalizer/v1.0/events//x/reward", json={"value": 1}).status_code == 204
    assert client.post("/personalizer/v1.0/events/a//b/reward", json={"value": 0.5}).status_code == 204
    clock.advance(1)
    service.learner.step()
    assert learned(service, "/x")[1] == 1 and learned(service, "a//b")[1] == 0.5
    assert learned(service, "x") == (None, None) and learned(service, "a/b") == (None, None)


def test_reward_during_a_learner_step_is_learned_not_lost(make_app: Any, clock: Any, database_url: str, monkeypatch: Any) -> None:
    """The learner reads ready events without locking them; a counted reward that lands before it
    publishes makes it discard the step and relearn the event with that reward."""
    from personalize import store

    client, service = setup(make_app, clock, database_url=database_url, reward_aggregation="sum")
    rank(client, "e1")
    assert reward(client, "e1", 0.5).status_code == 204
    clock.advance(10)  # exactly the end of the wait: ready, and rewards are still accepted
    read = store.ready_events

    def read_then_reward(*args: Any, **kwargs: Any) -> Any:
        joined = read(*args, **kwargs)
        assert reward(client, "e1", 0.25).status_code == 204
        return joined

    monkeypatch.setattr(store, "ready_events", read_then_reward)
    assert service.learner.step() == 0  # publish found the event changed: nothing stored
    assert learned(service, "e1") == (None, None)
    monkeypatch.undo()
    assert service.learner.step() == 1
    assert learned(service, "e1") == (1, 0.75)
    status = client.get("/personalizer/v1.0/status").json
    assert status["model"] == {**status["model"], "version": 1, "eventsLearned": 1}
    assert reward(client, "e1", 0.5).status_code == 409  # sum: final once learned


def test_sum_is_clamped_to_the_reward_range(make_app: Any, clock: Any, database_url: str) -> None:
    """2,000 rewards of 1.0 to one event teach reward_max (1.0), not 2,000: the same model as one reward."""
    client, service = setup(make_app, clock, reward_aggregation="sum", database_url=database_url)
    rank(client, "many")
    rank(client, "low")
    for _ in range(2000):
        assert reward(client, "many", 1.0).status_code == 204
    for _ in range(3):
        assert reward(client, "low", -1.0).status_code == 204
    clock.advance(10.5)
    assert service.learner.step() == 2
    assert learned(service, "many") == (1, 1.0)
    assert learned(service, "low") == (1, -1.0)
    assert client.get("/personalizer/v1.0/status").json["rewards"] == {"received": 2003, "notCounted": 0}


def test_many_rewards_learn_the_model_one_reward_at_the_maximum_learns(make_app: Any, clock: Any, tmp_path: Any) -> None:
    models = []
    for rewards in (2000, 1):
        event_clock = type(clock)()
        client, service = setup(make_app, event_clock, reward_aggregation="sum", data_dir=str(tmp_path / str(rewards)))
        rank(client, "e1")
        for _ in range(rewards):
            assert reward(client, "e1", 1.0).status_code == 204
        event_clock.advance(10.5)
        assert service.learner.step() == 1
        models.append(service.learner._model.serialize())
    assert models[0] == models[1]


_event_numbers = iter(range(1_000_000))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.floats(-1.0, 1.0), min_size=1, max_size=25))
@example(values=[1e-16, 1.0, -1.0])  # a naive left-to-right sum gives 0.0
@example(values=[1.0, 1e-16, -1.0, 1e-16])
@example(values=[0.1] * 10 + [-1.0])  # 0.1 * 10 - 1 is not 0.0 in naive float arithmetic
@example(values=[1.0, 1.0, -1.0, -0.5])
def test_sum_learns_the_exact_total_clamped_to_the_range(make_app: Any, clock: Any, values: list[float]) -> None:
    service = _sum_service(make_app, clock)
    client = service.client
    event_id = f"e{next(_event_numbers)}"
    rank(client, event_id)
    for value in values:
        assert reward(client, event_id, value).status_code == 204
    clock.advance(10.5)
    assert service.learner.step() == 1
    assert learned(service, event_id)[1] == min(max(math.fsum(values), -1.0), 1.0)


_SUM_SERVICES: dict[int, Any] = {}


def _sum_service(make_app: Any, clock: Any) -> Any:
    """One service per test run of the property (hypothesis calls the test body many times per fixture)."""
    service = _SUM_SERVICES.get(id(make_app))
    if service is None:
        client, service = setup(make_app, clock, reward_aggregation="sum")
        service.client = client
        _SUM_SERVICES.clear()
        _SUM_SERVICES[id(make_app)] = service
    return service


def test_concurrent_sum_rewards_are_all_counted(make_app: Any, clock: Any, database_url: str) -> None:
    """Rewards racing on one event (8 threads): every acknowledged one is in the exact total."""
    app = make_app(clock=clock, start=False, reward_wait_time=10, reward_aggregation="sum", reward_min=-1000.0,
                   reward_max=1000.0, database_url=database_url)
    client, service = app.test_client(), app.extensions["personalize"]
    rank(client, "hot")
    acknowledged: list[float] = []
    lock = threading.Lock()

    def send(worker: int) -> None:
        for k in range(25):
            value = (worker + 1) * 0.1 + k * 1e-9
            service.reward("hot", {"value": value})
            with lock:
                acknowledged.append(value)

    threads = [threading.Thread(target=send, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(acknowledged) == 200
    clock.advance(10.5)
    assert service.learner.step() == 1
    assert learned(service, "hot") == (1, math.fsum(acknowledged))
