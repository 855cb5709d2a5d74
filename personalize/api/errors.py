"""JSON errors: every 4xx/5xx body says what went wrong, which field, and how to fix it.

The body shape is Azure AI Personalizer's, so Microsoft's SDKs surface the message:
``{"error": {"code": "...", "message": "...", "target": "field"}}``.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from personalize.db_health import RETRY_AFTER_SECONDS, is_unavailable

__all__ = ["ApiError", "register_error_handlers", "service_unavailable"]

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error the client can act on. ``target`` names the offending field (JSON path)."""

    def __init__(self, status: int, code: str, message: str, target: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.target = target

    def body(self) -> dict[str, dict[str, str]]:
        error = {"code": self.code, "message": self.message}
        if self.target:
            error["target"] = self.target
        return {"error": error}


_HTTP_CODES = {
    400: "BadRequest", 404: "NotFound", 405: "MethodNotAllowed", 409: "Conflict",
    413: "PayloadTooLarge", 415: "UnsupportedMediaType", 422: "UnprocessableEntity",
}

_HTTP_HINTS = {
    405: "Check the HTTP method for this URL in docs/api.md.",
    413: "The request body is larger than the limit (max_body_bytes); send less per call, "
         "or raise PERSONALIZE_MAX_BODY_BYTES.",
}


def _not_found() -> str:
    """A 404's message: an operation that does not exist, or (outside /personalizer/) a wrong prefix."""
    path = request.path if len(request.path) <= 200 else request.path[:200] + "..."
    if request.path.startswith("/personalizer/"):
        return (f"There is no operation {request.method} {path}; the operations are listed in docs/api.md "
                "and GET /openapi.json.")
    return (f"{path} is not under the API's prefix: the operations live under /personalizer/v1.0/ "
            "(e.g. POST /personalizer/v1.0/rank); check the URL's prefix (see docs/api.md or GET /openapi.json).")


def service_unavailable() -> Response:
    """The 503 for a call refused because the database is unreachable: nothing was stored, retry later."""
    response = jsonify(ApiError(503, "ServiceUnavailable", "The database is unreachable, so nothing was done or "
                                f"stored; retry in {RETRY_AFTER_SECONDS} seconds.").body())
    response.status_code = 503
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):  # type: ignore[no-untyped-def]
        return jsonify(exc.body()), exc.status

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):  # type: ignore[no-untyped-def]
        status = exc.code or 500
        message = _not_found() if status == 404 else _HTTP_HINTS.get(status) or exc.description or exc.name
        if status == 413 and current_app.config.get("MAX_CONTENT_LENGTH"):
            message = message.replace("the limit", f"the limit of {current_app.config['MAX_CONTENT_LENGTH']} bytes")
        body = {"error": {"code": _HTTP_CODES.get(status, exc.name.replace(" ", "")), "message": message}}
        return jsonify(body), status

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):  # type: ignore[no-untyped-def]
        if is_unavailable(exc):  # an outage, not a bug: one log line when it starts (db_health), a 503 per call
            service = current_app.extensions.get("personalize")
            if service is not None:
                service.db.health.lost(exc)
            return service_unavailable()
        log.exception("unhandled error")
        body = {"error": {"code": "InternalServerError", "message": f"Unexpected server error ({type(exc).__name__}); see the server log."}}
        return jsonify(body), 500
