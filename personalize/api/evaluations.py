"""Offline evaluations and feature importance: background jobs (personalize.evaluation.jobs).

- ``PUT|POST /evaluations/{id}``, ``GET /evaluations/{id}`` (``startTime``/``endTime``/``intervalInMinutes``/
  ``window`` shape the time series), ``GET /evaluations`` (``top``, ``skip``, ``filter``), ``DELETE /evaluations/{id}``
- ``POST /configurations/applyFromEvaluation``: make a policy of a finished evaluation the policy in force
- ``PUT|POST /featureImportances/{id}``, ``GET /featureImportances/{id}``, ``GET /featureImportances``,
  ``DELETE /featureImportances/{id}``

Creating a job stores it (``NotSubmitted``) and answers at once; the process running the learner does the
work in a worker process. Results live in the database, so every server answers the same.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from typing import Any

from flask import Blueprint, Response, jsonify, request

from personalize.api._common import json_body, service
from personalize.api.errors import ApiError
from personalize.catalog import parse_time
from personalize.evaluation.jobs import EVALUATION, FEATURE_IMPORTANCE, FINISHED, JobExists, create_job, delete_job, get_job, list_jobs
from personalize.evaluation.offline import BUCKET_CHOICES, timeseries
from personalize.models import Job
from personalize.policy import Policy, PolicyError, check_policy, store_policy

__all__ = ["bp", "JOB_ID_PATTERN"]

bp = Blueprint("evaluations", __name__, url_prefix="/personalizer/v1.0")

#: Job ids: what a URL segment carries unchanged (GUIDs, names).
JOB_ID_PATTERN = re.compile(r"^(?!\.{1,2}$)[A-Za-z0-9._~-]{1,256}$")
WINDOWS = ("Expanding", "Rolling")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def _check_id(job_id: str, what: str) -> None:
    if not JOB_ID_PATTERN.match(job_id):
        raise ApiError(400, "BadRequest", f"{what} {job_id[:80]!r} is not a valid id: 1 to 256 letters, digits, '-', "
                       "'_', '.' or '~' (e.g. a GUID).", what)


def _time(body: dict[str, Any], name: str) -> float:
    try:
        return parse_time(body[name])
    except ValueError as exc:
        raise ApiError(422, "InvalidTime", f"{name}: {exc}; send an ISO 8601 time such as 2026-12-01T00:00:00Z.", name) from None


def _window(body: dict[str, Any]) -> tuple[float, float]:
    start, end = _time(body, "startTime"), _time(body, "endTime")
    if not start < end:
        raise ApiError(422, "InvalidTimeRange", "endTime must be after startTime.", "endTime")
    return start, end


def _create(kind: str, job_id: str, schema: str, what: str) -> Response:
    _check_id(job_id, what)
    svc = service()
    body = json_body()
    svc.schemas.check(schema, body)
    start, end = _window(body)
    request_doc: dict[str, Any] = {}
    if kind == EVALUATION:
        policies = []
        for i, policy in enumerate(body.get("policies") or []):
            try:
                arguments = check_policy(policy["arguments"])
            except PolicyError as exc:
                raise ApiError(422, "InvalidPolicy", f"policies[{i}].arguments: {exc}.", f"policies[{i}].arguments") from None
            policies.append({"name": policy["name"], "arguments": arguments})
        names = [p["name"] for p in policies]
        if len(set(names)) != len(names):
            raise ApiError(422, "DuplicatePolicyName", "Each policy needs its own name (applyFromEvaluation picks one by name).", "policies")
        request_doc = {"policies": policies, "enablePolicyOptimization": bool(body.get("enablePolicyOptimization"))}
    with svc.db.write() as session:
        try:
            job = create_job(session, kind, job_id, body["name"], start, end, request_doc, svc.clock())
        except JobExists:
            raise ApiError(409, "Conflict", f"{what} {job_id!r} already exists; choose another id, or delete it first.", what) from None
        answer = _job_json(job)
    response = jsonify(answer)
    response.headers["Location"] = f"{request.path.rsplit('/', 1)[0]}/{job_id}"
    return response


def _job_json(job: Job) -> dict[str, Any]:
    out: dict[str, Any] = {"id": job.id, "name": job.name, "startTime": _iso(job.start_time), "endTime": _iso(job.end_time),
                           "creationTime": _iso(job.created_at), "status": job.status, "progress": job.progress}
    if job.kind == EVALUATION:
        out["evaluationType"] = job.job_type
        out["enablePolicyOptimization"] = bool(job.request.get("enablePolicyOptimization"))
    if job.description:
        out["description"] = job.description
    return out


def _found(kind: str, job_id: str, what: str) -> Job:
    _check_id(job_id, what)
    svc = service()
    with svc.db.read() as session:
        job = get_job(session, kind, job_id)
    if job is None:
        raise ApiError(404, "NotFound", f"No {'evaluation' if kind == EVALUATION else 'feature importance'} with id "
                       f"{job_id!r}; list them with GET {request.path.rsplit('/', 1)[0]}.", what)
    return job


def _query_time(name: str, default: float) -> float:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        return parse_time(raw)
    except ValueError:
        raise ApiError(400, "BadRequest", f"{name} {raw[:60]!r} is not an ISO 8601 time such as 2026-12-01T00:00:00Z.", name) from None


def _paging() -> tuple[int | None, int]:
    out = []
    for name in ("top", "skip"):
        raw = request.args.get(name)
        if raw is None:
            out.append(None)
            continue
        if not raw.isdigit() or len(raw) > 9:
            raise ApiError(400, "BadRequest", f"{name} must be a whole number >= 0, not {raw[:40]!r}.", name)
        out.append(int(raw))
    return out[0], out[1] or 0


# -- evaluations ------------------------------------------------------------------------------------------
@bp.route("/evaluations/<evaluation_id>", methods=["PUT", "POST"])
def create_evaluation(evaluation_id: str) -> Response:
    return _create(EVALUATION, evaluation_id, "EvaluationContract", "evaluationId")


@bp.get("/evaluations/<evaluation_id>")
def read_evaluation(evaluation_id: str) -> Response:
    job = _found(EVALUATION, evaluation_id, "evaluationId")
    out = _job_json(job)
    result = job.result
    if job.status in FINISHED and result is not None:
        start = _query_time("startTime", job.start_time)
        end = _query_time("endTime", job.end_time)
        if not start < end:
            raise ApiError(400, "BadRequest", "endTime must be after startTime.", "endTime")
        raw_interval = request.args.get("intervalInMinutes", "5")
        if raw_interval not in tuple(str(m) for m in BUCKET_CHOICES):
            raise ApiError(400, "BadRequest", f"intervalInMinutes must be one of {', '.join(map(str, BUCKET_CHOICES))}, "
                           f"not {raw_interval[:20]!r}.", "intervalInMinutes")
        window = request.args.get("window", "Expanding")
        if window not in WINDOWS:
            raise ApiError(400, "BadRequest", f"window must be Expanding or Rolling, not {window[:20]!r}.", "window")
        values, used = [], int(raw_interval)
        for row in result["policies"]:
            points, used = timeseries(row["buckets"], result["bucketMinutes"], start, end, int(raw_interval), window)
            entry = {k: v for k, v in row.items() if k != "buckets"}
            entry["timeseries"] = {"data": [{**p, "timeStamp": _iso(p["timeStamp"])} for p in points]}
            values.append(entry)
        out["content"] = {"startTime": _iso(start), "endTime": _iso(end), "intervalInMinutes": used, "window": window,
                          "events": result["events"], "estimator": result["estimator"], "value": values}
        if result.get("optimalPolicy"):
            out["optimalPolicy"] = result["optimalPolicy"]
            out["optimization"] = result.get("optimization")
    return jsonify(_finite(out))


def _finite(value: Any) -> Any:
    """NaN/inf (an estimator with no weight) as null: JSON has no NaN."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


@bp.get("/evaluations")
def list_evaluations() -> Response:
    top, skip = _paging()
    job_type = None
    expression = request.args.get("filter")
    if expression:
        match = re.fullmatch(r"\s*(?:metadata\s*=\s*)?evaluationType\s+eq\s+'(Manual|Auto)'\s*", expression)
        if match is None:
            raise ApiError(400, "BadRequest", "filter supports evaluationType eq 'Manual' or evaluationType eq 'Auto'.", "filter")
        job_type = match.group(1)
    with service().db.read() as session:
        jobs = list_jobs(session, EVALUATION, top, skip, job_type)
    return jsonify({"value": [_job_json(j) for j in jobs]})


@bp.delete("/evaluations/<evaluation_id>")
def remove_evaluation(evaluation_id: str) -> tuple[str, int]:
    _found(EVALUATION, evaluation_id, "evaluationId")
    with service().db.write() as session:
        delete_job(session, EVALUATION, evaluation_id)
    return "", 204


@bp.post("/configurations/applyFromEvaluation")
def apply_from_evaluation() -> tuple[str, int]:
    svc = service()
    body = json_body()
    svc.schemas.check("PolicyReferenceContract", body)
    job = _found(EVALUATION, body["evaluationId"], "evaluationId")
    if job.status not in FINISHED or job.result is None:
        raise ApiError(409, "Conflict", f"Evaluation {job.id!r} is {job.status}; apply a policy once it has Succeeded.", "evaluationId")
    rows = {row["name"]: row for row in job.result["policies"]}
    row = rows.get(body["policyName"])
    if row is None:
        raise ApiError(404, "NotFound", f"Evaluation {job.id!r} has no policy named {body['policyName']!r}; its policies: "
                       f"{', '.join(repr(n) for n in rows)}.", "policyName")
    if not row["arguments"]:
        raise ApiError(422, "NotLearningSettings", f"{body['policyName']!r} is a reference policy ({row['policySource']}), not learning "
                       "settings; apply a Custom, Online or OfflineExperimentation policy.", "policyName")
    try:
        arguments = check_policy(row["arguments"])
    except PolicyError as exc:
        raise ApiError(422, "InvalidPolicy", f"policyName: {exc}.", "policyName") from None
    with svc.db.write() as session:
        store_policy(session, Policy(row["name"], arguments), svc.clock())
    return "", 204


# -- feature importances ------------------------------------------------------------------------------------
@bp.route("/featureImportances/<feature_importance_id>", methods=["PUT", "POST"])
def create_feature_importance(feature_importance_id: str) -> Response:
    return _create(FEATURE_IMPORTANCE, feature_importance_id, "FeatureImportanceContract", "featureImportanceId")


@bp.get("/featureImportances/<feature_importance_id>")
def read_feature_importance(feature_importance_id: str) -> Response:
    job = _found(FEATURE_IMPORTANCE, feature_importance_id, "featureImportanceId")
    out = _job_json(job)
    if job.result is not None:
        out["featureScores"] = job.result["featureScores"]
        out["events"] = job.result["events"]
        out["model"] = job.result["model"]
    return jsonify(_finite(out))


@bp.get("/featureImportances")
def list_feature_importances() -> Response:
    top, skip = _paging()
    with service().db.read() as session:
        jobs = list_jobs(session, FEATURE_IMPORTANCE, top, skip)
    return jsonify({"value": [_job_json(j) for j in jobs]})


@bp.delete("/featureImportances/<feature_importance_id>")
def remove_feature_importance(feature_importance_id: str) -> tuple[str, int]:
    _found(FEATURE_IMPORTANCE, feature_importance_id, "featureImportanceId")
    with service().db.write() as session:
        delete_job(session, FEATURE_IMPORTANCE, feature_importance_id)
    return "", 204
