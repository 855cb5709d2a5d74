"""Reward and Activate for a ranked event. Event ids may contain '/', hence their own converter."""

from flask import Blueprint
from werkzeug.routing import PathConverter

from personalize.api._common import json_body, service
from personalize.api.errors import ApiError

bp = Blueprint("events", __name__, url_prefix="/personalizer/v1.0")


class EventIdConverter(PathConverter):
    """Any non-empty id, slashes anywhere included (Werkzeug's path converter refuses a leading one)."""

    regex = ".+?"
    part_isolating = False  # the regex spans '/'; Werkzeug would otherwise match it within one segment


@bp.post("/events/<event_id:event_id>/reward")
def reward(event_id: str):  # type: ignore[no-untyped-def]
    service().reward(event_id, json_body())
    return "", 204


@bp.post("/events/<event_id:event_id>/activate")
def activate(event_id: str):  # type: ignore[no-untyped-def]
    if json_body(required=False) is not None:  # never silently ignored: a client sending one meant something else
        raise ApiError(400, "BadRequest", "Activate takes no body; send POST /events/{eventId}/activate with an empty "
                       "body (a reward goes to /events/{eventId}/reward).")
    service().activate(event_id)
    return "", 204
