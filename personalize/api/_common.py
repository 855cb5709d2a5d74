"""Helpers shared by the blueprints: the service handle and strict JSON bodies."""

from __future__ import annotations

from typing import Any

import orjson

from flask import current_app, request

from personalize.api.errors import ApiError
from personalize.service import Service


def service() -> Service:
    return current_app.extensions["personalize"]


def json_body(required: bool = True) -> Any:
    """The request's JSON body; malformed JSON, NaN/Infinity or a wrong type is a 400."""
    return decode_body(request.get_data(cache=False), required)


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
