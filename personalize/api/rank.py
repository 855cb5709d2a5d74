"""POST /personalizer/v1.0/rank (and /personalizer/rank for the 2022-09-01-preview SDK)."""

from flask import Blueprint, jsonify, request

from personalize.api._common import json_body, service

bp = Blueprint("rank", __name__, url_prefix="/personalizer/v1.0")


@bp.post("/rank")
def rank():  # type: ignore[no-untyped-def]
    return jsonify(service().rank(json_body(), request.headers)), 201
