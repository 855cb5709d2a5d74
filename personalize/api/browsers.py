"""What keeps web pages out: JSON content types for bodies, and CORS only for listed origins.

A page on any site can make a user's browser POST ``text/plain``, a form, or multipart data to
this service without a CORS preflight. A body must therefore declare a JSON content type
(``application/json``, with or without parameters such as charset, or any ``+json`` type), which
a browser only sends cross-origin after a preflight that CORS, off unless ``cors_origins`` lists
origins, refuses. Bodyless calls (Activate, ``generators/train`` without options) need no
content type. Model files (``PUT /model``) are ``application/octet-stream``; a browser preflights a
cross-origin PUT whatever its type.
"""

from __future__ import annotations

from flask import Flask, Response, request
from flask_cors import CORS

from personalize.api.errors import ApiError
from personalize.api.schemas import BINARY, BINARY_BODY_ENDPOINTS
from personalize.config import Settings

__all__ = ["install", "is_json_content_type", "require_json_content_type", "CORS_HEADERS"]

#: Request headers a browser client may send cross-origin: what the SDKs and curl examples use.
CORS_HEADERS = ("Content-Type", "Ocp-Apim-Subscription-Key", "Authorization")


def is_json_content_type(content_type: str) -> bool:
    """``application/json`` or ``type/subtype+json``, parameters (``; charset=utf-8``) allowed."""
    mimetype = content_type.partition(";")[0].strip().lower()
    return mimetype == "application/json" or (mimetype.endswith("+json") and "/" in mimetype)


def require_json_content_type() -> None:
    """A request with a body (Content-Length > 0, or chunked) that is not declared JSON is a 415."""
    environ = request._get_current_object().environ  # one trip through the proxy: this runs on every call
    length = environ.get("CONTENT_LENGTH")
    has_body = (length is not None and length.strip() not in ("", "0")) or (
        "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    )
    if not has_body:
        return
    content_type = environ.get("CONTENT_TYPE", "")
    if is_json_content_type(content_type):
        return
    rule = request.url_rule
    if rule is not None and rule.endpoint.replace("_preview.", ".") in BINARY_BODY_ENDPOINTS:
        # A model file (PUT /model). Browsers preflight a cross-origin PUT whatever its type, so this opens nothing.
        if content_type.partition(";")[0].strip().lower() in (BINARY, "application/zip"):
            return
        raise ApiError(415, "UnsupportedMediaType", f"A model file is sent as Content-Type: {BINARY}, not "
                       f"{content_type[:100] or 'without one'}.", "Content-Type")
    sent = f"Content-Type {content_type[:100]!r}" if content_type else "no Content-Type header"
    raise ApiError(415, "UnsupportedMediaType", f"The request has a body and {sent}; bodies are JSON: send "
                   "Content-Type: application/json.", "Content-Type")


def install(app: Flask, settings: Settings) -> None:
    """The content-type check always; CORS (flask-cors) only for the origins in ``cors_origins``."""
    app.before_request(require_json_content_type)
    origins = settings.cors_origin_list
    if not origins:
        return
    CORS(
        app,
        origins=list(origins),  # validated as plain scheme://host[:port]: matched exactly, not as patterns
        methods=["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"],
        allow_headers=list(CORS_HEADERS),
        expose_headers=["Retry-After", "WWW-Authenticate"],
        supports_credentials=False,  # keys travel in headers, never cookies
        always_send=False,  # no Access-Control-Allow-Origin for requests without an Origin
        max_age=600,
    )
    app.after_request(_vary_on_origin)


def _vary_on_origin(response: Response) -> Response:
    """With CORS on, every answer depends on Origin (flask-cors says so only with several origins):
    without ``Vary: Origin`` a shared cache could serve one origin's answer to another."""
    response.vary.add("Origin")
    return response
