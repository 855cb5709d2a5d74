"""Helpers shared by the blueprints: the service handle and strict JSON bodies."""

from __future__ import annotations

import json
from typing import Any

from flask import current_app, request

from personalize.api.errors import ApiError
from personalize.service import Service


def service() -> Service:
    return current_app.extensions["personalize"]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def json_body(required: bool = True) -> Any:
    """The request's JSON body; malformed JSON, NaN/Infinity or a wrong type is a 400."""
    raw = request.get_data(cache=False)
    if not raw.strip():
        if required:
            raise ApiError(400, "BadRequest", "The request body is empty; send a JSON object (Content-Type: application/json).")
        return None
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "InvalidJson", f"The request body is not valid JSON ({exc}); send a JSON object.") from None
