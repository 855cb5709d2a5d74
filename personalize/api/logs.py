"""GET /logs/properties and DELETE /logs (Personalizer's logs operations)."""

from flask import Blueprint, jsonify

from personalize.api._common import service

bp = Blueprint("logs", __name__, url_prefix="/personalizer/v1.0")


@bp.get("/logs/properties")
def properties():  # type: ignore[no-untyped-def]
    return jsonify(service().log_properties())


@bp.delete("/logs")
def delete():  # type: ignore[no-untyped-def]
    service().delete_logs()
    return "", 204
