"""Reward and Activate for a ranked event. Event ids may contain '/', hence the path converter."""

from flask import Blueprint

from personalize.api._common import json_body, service

bp = Blueprint("events", __name__, url_prefix="/personalizer/v1.0")


@bp.post("/events/<path:event_id>/reward")
def reward(event_id: str):  # type: ignore[no-untyped-def]
    service().reward(event_id, json_body())
    return "", 204


@bp.post("/events/<path:event_id>/activate")
def activate(event_id: str):  # type: ignore[no-untyped-def]
    service().activate(event_id)
    return "", 204
