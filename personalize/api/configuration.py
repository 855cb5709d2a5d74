"""GET/PUT /configurations/service: Personalizer's service configuration (personalize/service_config.py)."""

from flask import Blueprint, jsonify

from personalize.api._common import json_body, service

bp = Blueprint("configuration", __name__, url_prefix="/personalizer/v1.0")


@bp.get("/configurations/service")
def get_service():  # type: ignore[no-untyped-def]
    return jsonify(service().configuration())


@bp.put("/configurations/service")
def put_service():  # type: ignore[no-untyped-def]
    return jsonify(service().update_configuration(json_body()))
