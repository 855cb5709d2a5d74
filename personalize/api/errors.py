"""JSON errors: every 4xx/5xx body says what went wrong, which field, and how to fix it.

The body shape is Azure AI Personalizer's, so Microsoft's SDKs surface the message:
``{"error": {"code": "...", "message": "...", "target": "field"}}``.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, current_app, jsonify
from werkzeug.exceptions import HTTPException

__all__ = ["ApiError", "register_error_handlers"]

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
    404: "Check the URL: the API lives under /personalizer/v1.0/ (see docs/api.md).",
    405: "Check the HTTP method for this URL in docs/api.md.",
    413: "The request body is larger than the limit (max_body_bytes); send less per call, "
         "or raise PERSONALIZE_MAX_BODY_BYTES.",
}


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):  # type: ignore[no-untyped-def]
        return jsonify(exc.body()), exc.status

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):  # type: ignore[no-untyped-def]
        status = exc.code or 500
        message = _HTTP_HINTS.get(status) or exc.description or exc.name
        if status == 413 and current_app.config.get("MAX_CONTENT_LENGTH"):
            message = message.replace("the limit", f"the limit of {current_app.config['MAX_CONTENT_LENGTH']} bytes")
        body = {"error": {"code": _HTTP_CODES.get(status, exc.name.replace(" ", "")), "message": message}}
        return jsonify(body), status

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):  # type: ignore[no-untyped-def]
        log.exception("unhandled error")
        body = {"error": {"code": "InternalServerError", "message": f"Unexpected server error ({type(exc).__name__}); see the server log."}}
        return jsonify(body), 500
