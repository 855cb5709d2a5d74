"""Microsoft's PersonalizerAdministrationClient (azure-ai-personalizer 1.0.0b1), unchanged, against a live
`personalize serve` with keys: policy, evaluations, applyFromEvaluation and feature importance, on SQLite
and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
from azure.ai.personalizer import PersonalizerAdministrationClient, PersonalizerClient
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError

from tests.conftest import LiveServer
from tests.evaluation.simlog import BAD, GOOD, simulate

CLIENT_KEY, ADMIN_KEY = "client-key-1", "admin-key-1"
EVENTS = 600


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[str]:
    env = {"PERSONALIZE_API_KEYS": CLIENT_KEY, "PERSONALIZE_ADMIN_KEYS": ADMIN_KEY, "PERSONALIZE_DATABASE_URL": database_url,
           "PERSONALIZE_JOB_CPU_SHARE": "1"}
    live = LiveServer(tmp_path / "live", env=env).start()
    with PersonalizerClient(live.url, AzureKeyCredential(CLIENT_KEY), retry_total=0) as client:
        simulate(lambda body: client.rank(body), lambda event, value: client.reward(event, {"value": value}), EVENTS)
    yield live.url
    live.stop()


def _wait(read: Any, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = read()
        if job["status"] not in ("NotSubmitted", "Running"):
            return job
        time.sleep(0.5)
    raise AssertionError(f"job still {job['status']} after {timeout} s")


def test_every_admin_operation_through_the_sdk(server: str) -> None:
    admin = PersonalizerAdministrationClient(server, AzureKeyCredential(ADMIN_KEY), retry_total=0)
    now = dt.datetime.now(dt.timezone.utc)
    start, end = now - dt.timedelta(hours=1), now + dt.timedelta(minutes=1)
    time.sleep(1.0)  # the learner learns the rewarded events (earliest reward: ready at once)

    # policy
    default = admin.get_policy()
    assert default["name"] == "default" and "--cb_explore_adf" in default["arguments"]
    assert admin.update_policy({"name": "eps", "arguments": BAD + " --dsjson"}) == {"name": "eps", "arguments": BAD}
    assert admin.get_policy() == {"name": "eps", "arguments": BAD}
    with pytest.raises(HttpResponseError) as refused:
        admin.update_policy({"name": "x", "arguments": "--cb_explore_adf --nope"})
    assert refused.value.status_code == 422 and "--nope" in str(refused.value)
    assert admin.reset_policy() == default

    # an evaluation
    evaluation_id = f"eval-{uuid.uuid4()}"
    assert admin.create_evaluation(evaluation_id, {
        "name": "good vs bad", "startTime": start.isoformat(), "endTime": end.isoformat(), "enablePolicyOptimization": True,
        "policies": [{"name": "good", "arguments": GOOD}, {"name": "bad", "arguments": BAD}]}) is None
    with pytest.raises(ResourceExistsError):
        admin.create_evaluation(evaluation_id, {"name": "again", "startTime": start.isoformat(), "endTime": end.isoformat()})
    done = _wait(lambda: admin.get_evaluation(evaluation_id, start_time=start, end_time=end))
    assert done["status"] == "Succeeded", done
    rows = {row["name"]: row for row in done["content"]["value"]}
    assert {row["policySource"] for row in rows.values()} == {"Online", "Baseline", "Random", "Custom", "OfflineExperimentation"}
    value = {name: row["summary"]["expectedReward"] for name, row in rows.items()}
    assert value["good"] > value["bad"]
    assert value[done["optimalPolicy"]] >= value["good"] - 1e-9
    assert rows["good"]["timeseries"]["data"]
    hourly = admin.get_evaluation(evaluation_id, start_time=start, end_time=end, interval_in_minutes=60, window="Rolling")
    assert hourly["content"]["intervalInMinutes"] == 60
    listed = list(admin.list_evaluations())
    assert [e["id"] for e in listed] == [evaluation_id] and listed[0]["evaluationType"] == "Manual"

    # apply the optimal policy
    assert admin.apply_from_evaluation({"evaluationId": evaluation_id, "policyName": done["optimalPolicy"]}) is None
    assert admin.get_policy() == {"name": done["optimalPolicy"], "arguments": rows[done["optimalPolicy"]]["arguments"]}
    with pytest.raises(ResourceNotFoundError):
        admin.apply_from_evaluation({"evaluationId": evaluation_id, "policyName": "no such policy"})

    # feature importance
    importance_id = f"fi-{uuid.uuid4()}"
    assert admin.create_feature_importance(importance_id, {"name": "which features", "startTime": start.isoformat(),
                                                           "endTime": end.isoformat()}) is None
    scores = _wait(lambda: admin.get_feature_importance(importance_id))
    assert scores["status"] == "Succeeded", scores
    top = {(s["namespace"], s["featureName"]) for s in scores["featureScores"][:2]}
    assert top == {("user", "kind"), ("item", "k")}
    assert [f["id"] for f in admin.list_feature_importances()] == [importance_id]

    # deletes, then 404s
    assert admin.delete_feature_importance(importance_id) is None
    assert admin.delete_evaluation(evaluation_id) is None
    with pytest.raises(ResourceNotFoundError):
        admin.get_evaluation(evaluation_id, start_time=start, end_time=end)
    with pytest.raises(ResourceNotFoundError):
        admin.get_feature_importance(importance_id)
    with pytest.raises(ResourceNotFoundError):
        admin.delete_evaluation(evaluation_id)

    # a client key cannot reach any of it
    client_key = PersonalizerAdministrationClient(server, AzureKeyCredential(CLIENT_KEY), retry_total=0)
    with pytest.raises(HttpResponseError) as forbidden:
        client_key.get_policy()
    assert forbidden.value.status_code == 403
