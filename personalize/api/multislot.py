"""Multi-slot Rank, Reward and Activate (Personalizer's /multislot/... operations)."""

from flask import Blueprint, jsonify

from personalize.api._common import json_body, service
from personalize.api.errors import ApiError

bp = Blueprint("multislot", __name__, url_prefix="/personalizer/v1.0")


@bp.post("/multislot/rank")
def rank():  # type: ignore[no-untyped-def]
    return jsonify(service().rank_multislot(json_body())), 201


@bp.post("/multislot/events/<event_id:event_id>/reward")
def reward(event_id: str):  # type: ignore[no-untyped-def]
    service().reward_multislot(event_id, json_body())
    return "", 204


@bp.post("/multislot/events/<event_id:event_id>/activate")
def activate(event_id: str):  # type: ignore[no-untyped-def]
    if json_body(required=False) is not None:  # never silently ignored: a client sending one meant something else
        raise ApiError(400, "BadRequest", "Activate takes no body; send POST /multislot/events/{eventId}/activate with an "
                       "empty body (rewards go to /multislot/events/{eventId}/reward).")
    service().activate_multislot(event_id)
    return "", 204
