"""The learning policy (Personalizer's learning settings):

- ``GET    /configurations/policy``: the policy in force (``name``, ``arguments``)
- ``PUT    /configurations/policy``: check it with VW in a child process, then store it; the learner
  rebuilds the model under it from the logged events and publishes it (docs/api.md, "Policy")
- ``DELETE /configurations/policy``: back to the configured default; answers the default
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from personalize.api._common import json_body, service
from personalize.api.errors import ApiError
from personalize.policy import Policy, PolicyError, check_policy, current_policy, reset_policy, store_policy

__all__ = ["bp"]

bp = Blueprint("policy", __name__, url_prefix="/personalizer/v1.0")


@bp.get("/configurations/policy")
def get_policy() -> Response:
    svc = service()
    with svc.db.read() as session:
        return jsonify(current_policy(session, svc.settings).json())


@bp.put("/configurations/policy")
def put_policy() -> Response:
    svc = service()
    body = json_body()
    svc.schemas.check("PolicyContract", body)
    try:
        arguments = check_policy(body["arguments"])  # a child process: a policy that aborts VW cannot take us down
    except PolicyError as exc:
        raise ApiError(422, "InvalidPolicy", f"arguments: {exc}.", "arguments") from None
    policy = Policy(body["name"], arguments)
    with svc.db.write() as session:
        store_policy(session, policy, svc.clock())
    if svc.learner is not None:
        svc.learner.policy_changed()  # this process's learner follows at its next step; others within a poll
    return jsonify(policy.json())


@bp.delete("/configurations/policy")
def delete_policy() -> Response:
    svc = service()
    with svc.db.write() as session:
        reset_policy(session)
    if svc.learner is not None:
        svc.learner.policy_changed()
    with svc.db.read() as session:
        return jsonify(current_policy(session, svc.settings).json())
