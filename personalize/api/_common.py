"""Helpers shared by the blueprints: the service handle and strict JSON bodies."""

from __future__ import annotations

from typing import Any

import orjson

from flask import current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from personalize.api.errors import ApiError
from personalize.service import Service


def service() -> Service:
    return current_app.extensions["personalize"]


def json_body(required: bool = True) -> Any:
    """The request's JSON body; malformed JSON, NaN/Infinity or a wrong type is a 400."""
    raw = request.get_data(cache=False)
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    if limit is not None and len(raw) >= limit and request.content_length is None:
        # A body without Content-Length (chunked) is read only up to the limit; one more byte
        # means it was longer: a 413, never a body cut at the limit and parsed as if whole.
        if request.environ["wsgi.input"].read(1):
            raise RequestEntityTooLarge()
    return decode_body(raw, required)


def decode_body(raw: bytes, required: bool = True) -> Any:
    """A request body's JSON (what ``json_body`` reads; also for callers that skip WSGI, e.g. the simulator)."""
    if not raw or raw.isspace():
        if required:
            raise ApiError(400, "BadRequest", "The request body is empty; send a JSON object (Content-Type: application/json).")
        return None
    try:
        return orjson.loads(raw)  # strict JSON: NaN and Infinity are rejected
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "InvalidJson", f"The request body is not valid JSON ({exc}); send a JSON object.") from None


def require_utf8_path() -> None:
    """A path whose percent-decoded bytes are not UTF-8 is a 400: Werkzeug would turn each bad byte into
    U+FFFD, so different ids (``caf%e9``, ``caf%ff``) would reach the same item or event."""
    path = request._get_current_object().environ["PATH_INFO"]  # WSGI: the decoded bytes as latin-1
    if path.isascii():
        return
    try:
        path.encode("latin-1").decode("utf-8")
    except UnicodeError:
        raise ApiError(400, "BadRequest", "The URL's path is not UTF-8 once percent-decoded; percent-encode ids "
                       "as UTF-8 (e.g. %C3%A9 for é).") from None

