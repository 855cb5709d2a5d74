"""Model export, import, reset and properties (Personalizer's /model; personalize/model_admin.py)."""

from flask import Blueprint, Response, jsonify, request

from personalize.api._common import service
from personalize.api.errors import ApiError
from personalize.api.schemas import BINARY

bp = Blueprint("model", __name__, url_prefix="/personalizer/v1.0")


def _signed() -> bool:
    """The ``signed`` query parameter as the SDK sends it (``true``/``false``); anything else is a 400."""
    raw = request.args.get("signed", "false").strip().lower()
    if raw not in ("true", "false", "1", "0"):
        raise ApiError(400, "BadRequest", f"signed must be true or false, not {raw[:50]!r}.", "signed")
    return raw in ("true", "1")


@bp.get("/model")
def export_model():  # type: ignore[no-untyped-def]
    signed = _signed()
    data = service().export_model(signed)
    name = "personalize-model.zip" if signed else "personalize-model.vw"
    return Response(data, status=200, mimetype=BINARY, headers={"Content-Disposition": f'attachment; filename="{name}"'})


@bp.put("/model")
def import_model():  # type: ignore[no-untyped-def]
    # The body is at most max_body_bytes (a 413 above): a larger model goes in with `personalize model import`.
    service().import_model(request.get_data(cache=False))
    return "", 204


@bp.delete("/model")
def reset_model():  # type: ignore[no-untyped-def]
    service().reset_model()
    return "", 204


@bp.get("/model/properties")
def properties():  # type: ignore[no-untyped-def]
    return jsonify(service().model_properties())
