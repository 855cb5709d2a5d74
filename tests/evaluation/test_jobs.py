"""Background jobs (personalize/evaluation/jobs.py) through the API: evaluations and feature importance
run by a JobRunner in a real worker process, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from personalize.evaluation.jobs import EVALUATION, JobRunner, create_job, get_job, fail_stale, STALE_SECONDS
from personalize.models import ModelSnapshot
from tests.evaluation.simlog import BAD, GOOD

V1 = "/personalizer/v1.0"
WINDOW = {"startTime": "2000-01-01T00:00:00Z", "endTime": "2100-01-01T00:00:00Z"}


def _runner(app: Any) -> JobRunner:
    service = app.extensions["personalize"]
    return JobRunner(service.settings, service.db, lambda: True, app.clock)


def test_an_evaluation_ranks_the_better_policy_first_and_the_optimum_is_at_least_as_good(logged_app: Any) -> None:
    client = logged_app.test_client()
    created = client.put(f"{V1}/evaluations/eval-1", json={
        "name": "good vs bad", **WINDOW, "enablePolicyOptimization": True,
        "policies": [{"name": "good", "arguments": GOOD}, {"name": "bad", "arguments": BAD}]})
    assert created.status_code == 200, created.json
    assert created.json["status"] == "NotSubmitted"
    assert client.get(f"{V1}/evaluations/eval-1").json["status"] == "NotSubmitted"
    assert _runner(logged_app).tick() == "Succeeded"  # in a worker process
    body = client.get(f"{V1}/evaluations/eval-1").json
    assert body["status"] == "Succeeded" and body["progress"] == 1.0
    rows = {row["name"]: row for row in body["content"]["value"]}
    sources = {row["policySource"] for row in rows.values()}
    assert sources == {"Online", "Baseline", "Random", "Custom", "OfflineExperimentation"}
    value = {name: row["summary"]["expectedReward"] for name, row in rows.items()}
    assert value["good"] > value["bad"] + 0.2
    assert value["good"] > value["Random"]
    optimal = rows[body["optimalPolicy"]]
    assert optimal["policySource"] == "OfflineExperimentation"
    assert value[body["optimalPolicy"]] >= value["good"] - 1e-9
    for row in rows.values():
        low, high = row["summary"]["confidenceInterval"]
        assert low <= row["summary"]["expectedReward"] <= high
        assert set(row["estimates"]) >= {"ips", "snips", "dr"}
        assert row["timeseries"]["data"], row["name"]
    assert body["content"]["events"] == 1200
    rolling = client.get(f"{V1}/evaluations/eval-1", query_string={"window": "Rolling", "intervalInMinutes": 5}).json
    points = rolling["content"]["value"][0]["timeseries"]["data"]
    assert len(points) >= 4 and rolling["content"]["intervalInMinutes"] == 5  # 1200 s of events in 5-minute points


def test_feature_importance_ranks_the_feature_that_drives_reward_first(logged_app: Any) -> None:
    client = logged_app.test_client()
    assert client.put(f"{V1}/featureImportances/fi-1", json={"name": "which features", **WINDOW}).status_code == 200
    assert _runner(logged_app).tick() == "Succeeded"
    body = client.get(f"{V1}/featureImportances/fi-1").json
    scores = body["featureScores"]
    names = [(s["namespace"], s["featureName"]) for s in scores]
    assert set(names[:2]) == {("user", "kind"), ("item", "k")}  # the reward is decided by kind x k
    by_name = {(s["namespace"], s["featureName"]): s["score"] for s in scores}
    assert by_name[("user", "kind")] > 10 * by_name[("user", "noise")]
    assert by_name[("item", "k")] > 10 * by_name[("item", "color")]
    assert [s["score"] for s in scores] == sorted((s["score"] for s in scores), reverse=True)
    listed = client.get(f"{V1}/featureImportances").json["value"]
    assert [j["id"] for j in listed] == ["fi-1"]
    assert client.delete(f"{V1}/featureImportances/fi-1").status_code == 204
    assert client.get(f"{V1}/featureImportances/fi-1").status_code == 404


def test_apply_from_evaluation_makes_the_policy_run_and_the_learner_rebuilds_the_model(logged_app: Any) -> None:
    client = logged_app.test_client()
    service = logged_app.extensions["personalize"]
    client.put(f"{V1}/evaluations/eval-2", json={"name": "x", **WINDOW, "policies": [{"name": "good", "arguments": GOOD}]})
    early = client.post(f"{V1}/configurations/applyFromEvaluation", json={"evaluationId": "eval-2", "policyName": "good"})
    assert early.status_code == 409 and early.json["error"]["target"] == "evaluationId"
    assert _runner(logged_app).tick() == "Succeeded"
    missing = client.post(f"{V1}/configurations/applyFromEvaluation", json={"evaluationId": "eval-2", "policyName": "nope"})
    assert missing.status_code == 404 and missing.json["error"]["target"] == "policyName"
    baseline = client.post(f"{V1}/configurations/applyFromEvaluation",
                           json={"evaluationId": "eval-2", "policyName": "Baseline: first action"})
    assert baseline.status_code == 422 and baseline.json["error"]["target"] == "policyName"
    applied = client.post(f"{V1}/configurations/applyFromEvaluation", json={"evaluationId": "eval-2", "policyName": "good"})
    assert applied.status_code == 204
    assert client.get(f"{V1}/configurations/policy").json == {"name": "good", "arguments": GOOD}
    version = service.ranker.version
    service.learner._policy_checked = float("-inf")  # don't wait for the next poll
    service.learner.step()
    with service.db.read() as session:
        snapshot = session.query(ModelSnapshot).order_by(ModelSnapshot.version.desc()).first()
    assert snapshot.vw_args == GOOD + " --quiet" and snapshot.events_learned == 1200
    assert service.ranker.version == version + 1 and service.ranker.vw_args == (GOOD + " --quiet").split()
    # the rebuilt model learned the log: it picks the user's kind
    for kind in ("a", "b", "c"):
        ranked = client.post(f"{V1}/rank", json={
            "contextFeatures": [{"user": {"kind": kind, "noise": "p"}}],
            "actions": [{"id": x, "features": [{"item": {"k": x, "color": "red"}}]} for x in "abc"]}).json
        assert max(ranked["ranking"], key=lambda r: r["probability"])["id"] == kind


def test_an_evaluation_without_events_fails_saying_why(logged_app: Any) -> None:
    client = logged_app.test_client()
    client.put(f"{V1}/evaluations/empty", json={"name": "x", "startTime": "1990-01-01T00:00:00Z",
                                               "endTime": "1991-01-01T00:00:00Z"})
    assert _runner(logged_app).tick() == "Failed"
    body = client.get(f"{V1}/evaluations/empty").json
    assert body["status"] == "Failed" and "no learned events" in body["description"]
    assert "content" not in body


@pytest.mark.parametrize("method,path,body,status,target", [
    ("PUT", "/evaluations/a b", {"name": "x", **WINDOW}, 400, "evaluationId"),
    ("PUT", "/evaluations/e", {**WINDOW}, 400, "name"),
    ("PUT", "/evaluations/e", {"name": "x", "startTime": "yesterday", "endTime": WINDOW["endTime"]}, 400, "startTime"),
    ("PUT", "/evaluations/e", {"name": "x", "startTime": "2020-01-01t00:00:00z", "endTime": WINDOW["endTime"]}, 422, "startTime"),
    ("PUT", "/evaluations/e", {"name": "x", "startTime": WINDOW["endTime"], "endTime": WINDOW["startTime"]}, 422, "endTime"),
    ("PUT", "/evaluations/e", {"name": "x", **WINDOW, "polices": []}, 400, "polices"),
    ("PUT", "/evaluations/e", {"name": "x", **WINDOW, "policies": [{"name": "p", "arguments": "--nope"}]}, 422,
     "policies[0].arguments"),
    ("PUT", "/evaluations/e", {"name": "x", **WINDOW, "policies": [{"name": "p", "arguments": GOOD},
                                                                   {"name": "p", "arguments": BAD}]}, 422, "policies"),
    ("GET", "/evaluations/unknown", None, 404, "evaluationId"),
    ("DELETE", "/evaluations/unknown", None, 404, "evaluationId"),
    ("GET", "/evaluations?top=-1", None, 400, "top"),
    ("GET", "/evaluations?filter=name eq 'x'", None, 400, "filter"),
    ("PUT", "/featureImportances/f", {"name": "x"}, 400, "startTime"),
    ("GET", "/featureImportances/unknown", None, 404, "featureImportanceId"),
    ("POST", "/configurations/applyFromEvaluation", {"evaluationId": "unknown", "policyName": "x"}, 404, "evaluationId"),
    ("POST", "/configurations/applyFromEvaluation", {"evaluationId": "x"}, 400, "policyName"),
])
def test_bad_input_names_the_field(make_app: Any, method: str, path: str, body: Any, status: int, target: str) -> None:
    client = make_app(start=False).test_client()
    response = client.open(V1 + path, method=method, json=body)
    assert response.status_code == status, response.json
    assert response.json["error"]["target"] == target, response.json


def test_bad_timeseries_queries_name_the_parameter(logged_app: Any) -> None:
    client = logged_app.test_client()
    client.put(f"{V1}/evaluations/q", json={"name": "x", **WINDOW})
    _runner(logged_app).tick()
    for query, target in (({"intervalInMinutes": 7}, "intervalInMinutes"), ({"window": "Sliding"}, "window"),
                          ({"startTime": "soon"}, "startTime")):
        response = client.get(f"{V1}/evaluations/q", query_string=query)
        assert response.status_code == 400 and response.json["error"]["target"] == target


def test_ids_are_unique_listing_pages_and_deleting_works(make_app: Any) -> None:
    client = make_app(start=False).test_client()
    for i in range(3):
        assert client.post(f"{V1}/evaluations/e{i}", json={"name": f"n{i}", **WINDOW}).status_code == 200
    again = client.put(f"{V1}/evaluations/e0", json={"name": "x", **WINDOW})
    assert again.status_code == 409 and again.json["error"]["target"] == "evaluationId"
    assert [e["id"] for e in client.get(f"{V1}/evaluations?top=2&skip=1").json["value"]] == ["e1", "e2"]
    assert [e["id"] for e in client.get(f"{V1}/evaluations?filter=evaluationType eq 'Auto'").json["value"]] == []
    assert client.delete(f"{V1}/evaluations/e1").status_code == 204
    assert [e["id"] for e in client.get(f"{V1}/evaluations").json["value"]] == ["e0", "e2"]


def test_a_job_whose_runner_died_is_failed(make_app: Any, clock: Any) -> None:
    service = make_app(start=False, clock=clock).extensions["personalize"]
    with service.db.write() as session:
        job = create_job(session, EVALUATION, "orphan", "x", 0.0, 1.0, {}, clock())
        job.status, job.owner, job.heartbeat = "Running", "gone", clock()
    clock.advance(STALE_SECONDS + 1)
    with service.db.write() as session:
        assert fail_stale(session, clock()) == 1
    with service.db.read() as session:
        assert get_job(session, EVALUATION, "orphan").status == "Failed"


def test_the_runner_waits_for_the_lease(make_app: Any) -> None:
    service = make_app(start=False).extensions["personalize"]
    with service.db.write() as session:
        create_job(session, EVALUATION, "later", "x", 0.0, 1.0, {}, 0.0)
    assert JobRunner(service.settings, service.db, lambda: False).tick() is None
    with service.db.read() as session:
        assert get_job(session, EVALUATION, "later").status == "NotSubmitted"


def test_the_cpu_share_is_a_checked_setting() -> None:
    from personalize.config import SettingsError, load_settings

    assert load_settings({"job_cpu_share": 0.25}, env={}).job_cpu_share == 0.25
    for bad in (0, 1.5, -1):
        with pytest.raises(SettingsError, match="job_cpu_share"):
            load_settings({"job_cpu_share": bad}, env={})


def test_a_stopped_runner_puts_its_job_back_in_the_queue(logged_app: Any) -> None:
    import time

    client = logged_app.test_client()
    client.put(f"{V1}/evaluations/stopped", json={"name": "x", **WINDOW, "enablePolicyOptimization": True})
    service = logged_app.extensions["personalize"]
    runner = JobRunner(service.settings, service.db, lambda: True, app_clock := logged_app.clock, poll=0.05)
    runner.start()
    deadline = time.time() + 30
    while client.get(f"{V1}/evaluations/stopped").json["status"] != "Running" and time.time() < deadline:
        time.sleep(0.05)
    runner.stop()
    body = client.get(f"{V1}/evaluations/stopped").json
    assert body["status"] == "NotSubmitted", body  # the next runner (e.g. after a restart) runs it
    assert JobRunner(service.settings, service.db, lambda: True, app_clock).tick() == "Succeeded"
