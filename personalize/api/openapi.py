"""GET /openapi.json (also under /personalizer/v1.0): the OpenAPI 3.1 document, built from personalize/api/schemas.py."""

from flask import Blueprint, current_app, jsonify

from personalize.api._common import service
from personalize.api.schemas import openapi_document

bp = Blueprint("openapi", __name__)


@bp.get("/openapi.json")
@bp.get("/personalizer/v1.0/openapi.json")
def document():  # type: ignore[no-untyped-def]
    """Built once per app: it holds this server's limits (max_actions, the reward range)."""
    doc = current_app.extensions.get("personalize.openapi")
    if doc is None:
        doc = current_app.extensions["personalize.openapi"] = openapi_document(service().settings)
    return jsonify(doc)
