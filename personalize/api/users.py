"""A user's data (personalize/userdata.py): ``GET`` exports it, ``DELETE`` erases it. Admin key.

- ``GET    /personalizer/v1.0/users/<userId>``: events (with rewards and examples) and interactions
- ``DELETE /personalizer/v1.0/users/<userId>``: erase them in one transaction; the answer counts the rows

User ids may contain '/' (as in Rank): the route takes the rest of the path, percent-decoded.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from personalize.api._common import json_body, service
from personalize.api.errors import ApiError
from personalize.userdata import delete_user, export_user, user_id_problem

__all__ = ["bp"]

bp = Blueprint("users", __name__, url_prefix="/personalizer/v1.0")


def _checked(user_id: str) -> str:
    problem = user_id_problem(user_id)
    if problem is not None:
        raise ApiError(400, "BadRequest", f"userId {problem} (the id sent to Rank as userId; percent-encode it in the URL).", "userId")
    return user_id


def _not_found(user_id: str) -> ApiError:
    return ApiError(404, "UserNotFound", f"No events or interactions are stored for userId {user_id!r}; check the id "
                    "(matched exactly, as sent to Rank or with the interactions).", "userId")


@bp.get("/users/<event_id:user_id>")
def export(user_id: str) -> Response:
    with service().db.reading() as connection:
        data = export_user(connection, _checked(user_id))
    if data is None:
        raise _not_found(user_id)
    return jsonify(data)


@bp.delete("/users/<event_id:user_id>")
def erase(user_id: str) -> Response:
    _checked(user_id)
    if json_body(required=False) is not None:  # never silently ignored
        raise ApiError(400, "BadRequest", "Deleting a user takes no body; send DELETE /users/{userId} with an empty body.")
    with service().db.transaction() as connection:
        deleted = delete_user(connection, user_id)
    if deleted is None:
        raise _not_found(user_id)
    return jsonify({"userId": user_id, "deleted": deleted})
