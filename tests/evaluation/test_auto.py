"""Auto-optimization (personalize/evaluation/auto.py): when an automatic evaluation is due, and when its
optimal policy may replace the one in force; with a fake clock, then end to end through the job runner."""

from __future__ import annotations

from typing import Any

from personalize.evaluation.auto import AUTO_MIN_EVENTS, AutoOptimization, decide, next_auto_window
from personalize.evaluation.jobs import EVALUATION, JobRunner, list_jobs
from personalize.policy import current_policy
from tests.conftest import FakeClock

DAY = 86_400.0
V1 = "/personalizer/v1.0"


def test_an_automatic_evaluation_is_due_every_frequency_after_the_start_date() -> None:
    clock = FakeClock()
    config = AutoOptimization(enabled=True, frequency=7 * DAY, start=clock() + DAY)
    assert next_auto_window(clock(), config, None) is None  # before the start date
    clock.advance(DAY)
    assert next_auto_window(clock(), config, None) == (clock() - 7 * DAY, clock())  # the last week
    created = clock()
    clock.advance(7 * DAY - 1)
    assert next_auto_window(clock(), config, created) is None
    clock.advance(1)
    assert next_auto_window(clock(), config, created) == (clock() - 7 * DAY, clock())
    assert next_auto_window(clock(), AutoOptimization(enabled=False, frequency=DAY), None) is None
    assert next_auto_window(clock(), None, None) is None


def _result(events: int, gain: float, low: float, high: float, best: str = "--cb_explore_adf -q ca -l 8") -> dict[str, Any]:
    return {"events": events, "policies": [{"policySource": "OfflineExperimentation", "arguments": best}],
            "optimization": {"baseline": "--cb_explore_adf -q ca -l 2",
                             "gainOverCurrent": {"estimate": gain, "confidenceInterval": [low, high]}}}


def test_the_safeguard_applies_only_a_gain_its_interval_supports() -> None:
    assert decide(_result(5000, 0.03, 0.01, 0.05)).apply
    assert decide(_result(5000, 0.03, 0.01, 0.05)).arguments == "--cb_explore_adf -q ca -l 8"
    retained = decide(_result(5000, 0.03, -0.01, 0.07))  # the interval includes no gain
    assert not retained.apply and "does not exclude" in retained.reason
    few = decide(_result(AUTO_MIN_EVENTS - 1, 0.3, 0.2, 0.4))
    assert not few.apply and "events" in few.reason
    same = decide(_result(5000, 0.0, 0.0, 0.0, best="--cb_explore_adf  -q ca -l 2"))
    assert not same.apply and "best" in same.reason
    assert not decide({"events": 5000, "policies": []}).apply


def test_the_runner_creates_runs_and_applies_an_automatic_evaluation(logged_app: Any) -> None:
    service = logged_app.extensions["personalize"]
    clock = logged_app.clock
    config = AutoOptimization(enabled=True, frequency=DAY)
    runner = JobRunner(service.settings, service.db, lambda: True, clock, auto_settings=lambda: config)
    status = runner.tick()  # creates the automatic evaluation of the last day and runs it in a worker
    assert status in ("OptimalPolicyApplied", "OnlinePolicyRetained")
    with service.db.read() as session:
        jobs = list_jobs(session, EVALUATION, job_type="Auto")
        policy = current_policy(session, service.settings)
    assert len(jobs) == 1 and jobs[0].status == status and jobs[0].description
    decision = decide(jobs[0].result)
    assert (status == "OptimalPolicyApplied") == decision.apply
    if decision.apply:
        assert policy.arguments == decision.arguments and policy.name.startswith("auto-optimized")
    else:
        assert policy.name == "default"
    listed = logged_app.test_client().get(f"{V1}/evaluations", query_string={"filter": "evaluationType eq 'Auto'"}).json
    assert [e["evaluationType"] for e in listed["value"]] == ["Auto"]
    assert runner.tick() is None  # not due again before a day has passed
    clock.advance(DAY)
    assert runner.tick() in ("OptimalPolicyApplied", "OnlinePolicyRetained", "Failed")  # the next period
    with service.db.read() as session:
        assert len(list_jobs(session, EVALUATION, job_type="Auto")) == 2


def test_the_service_runner_reads_auto_optimization_from_the_live_service_configuration(make_app: Any) -> None:
    app = make_app(start=False, learner="inline")
    service = app.extensions["personalize"]
    assert service.jobs is not None and service.jobs.auto_settings() is None  # off by default
    body = {"rewardWaitTime": "PT1M", "defaultReward": 0, "rewardAggregation": "earliest", "explorationPercentage": 0.1,
            "modelExportFrequency": "PT1M", "logRetentionDays": -1, "modelRetrainDays": 0,
            "isAutoOptimizationEnabled": True, "autoOptimizationFrequency": "P1D",
            "autoOptimizationStartDate": "2026-01-01T00:00:00Z"}
    response = app.test_client().put(f"{V1}/configurations/service", json=body)
    assert response.status_code == 200, response.json
    assert service.jobs.auto_settings() == AutoOptimization(enabled=True, frequency=DAY, start=1767225600.0)
    body["isAutoOptimizationEnabled"] = False
    assert app.test_client().put(f"{V1}/configurations/service", json=body).status_code == 200
    assert service.jobs.auto_settings() is None
