"""Catalog and interaction endpoints: what the candidate generators learn from.

- ``PUT    /personalizer/v1.0/catalog/items/<id>``: create or replace one item
- ``POST   /personalizer/v1.0/catalog/items``: bulk upsert ``{"items": [...]}``
- ``GET    /personalizer/v1.0/catalog/items/<id>``: one item
- ``DELETE /personalizer/v1.0/catalog/items/<id>``: deactivate (history keeps pointing at it)
- ``POST   /personalizer/v1.0/interactions``: bulk insert ``{"interactions": [...]}``

Bulk calls are all-or-nothing: one bad row rejects the call, and the error names every bad row
(an id sent twice in one items call is a bad row too). A body field the call does not take is a
``400 UnknownField``: a misspelling is never silently ignored.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from personalize.api._common import json_body, service
from personalize.api.errors import ApiError, refuse_unknown_fields
from personalize.catalog import (
    RowError, add_interactions, brief, deactivate_item, get_item, item_json, parse_interaction, parse_item,
    upsert_items, validate_rows,
)
from personalize.models import Item

__all__ = ["bp", "MAX_BULK_ROWS"]

bp = Blueprint("catalog", __name__, url_prefix="/personalizer/v1.0")

#: Most rows in one bulk call; larger loads belong in `personalize import`.
MAX_BULK_ROWS = 10_000


def _body() -> dict[str, Any]:
    body = json_body(required=False)
    if not isinstance(body, dict):
        raise ApiError(400, "BadRequest", "The body must be a JSON object; send Content-Type: application/json.")
    return body


def _rows(body: dict[str, Any], key: str) -> list[tuple[int, Any]]:
    rows = body.get(key)
    if not isinstance(rows, list) or not rows:
        raise ApiError(400, "BadRequest", f"{key} must be a non-empty array.", key)
    if len(rows) > MAX_BULK_ROWS:
        raise ApiError(400, "BadRequest", f"{key} has {len(rows)} rows; send at most {MAX_BULK_ROWS} per call.", key)
    return list(enumerate(rows))


def _rejected(key: str, errors: list[RowError]) -> ApiError:
    details = "; ".join(f"{key}[{e.line}].{e.field}: {e.message}" for e in errors[:10])
    more = f" (and {len(errors) - 10} more)" if len(errors) > 10 else ""
    return ApiError(400, "InvalidRows", f"{len(errors)} row(s) rejected, nothing stored: {details}{more}", f"{key}[{errors[0].line}]")


def _objects_only(rows: list[tuple[int, Any]], key: str) -> None:
    bad = [RowError(i, "row", "must be a JSON object") for i, row in rows if not isinstance(row, dict)]
    if bad:
        raise _rejected(key, bad)


@bp.put("/catalog/items/<item_id>")
def put_item(item_id: str) -> tuple[Response, int]:
    body = _body()
    body_id = body.get("id", item_id)
    if not (isinstance(body_id, (str, int, float)) and str(body_id) == item_id):
        raise ApiError(400, "BadRequest", f"The body's id ({brief(body_id)}) differs from the URL's {item_id!r}; drop one.", "id")
    items, errors = validate_rows([(0, {**body, "id": item_id})], parse_item)
    if errors:
        raise ApiError(400, "InvalidItem", errors[0].message, errors[0].field)
    with service().sessions() as session:
        inserted, _ = upsert_items(session, items)
        session.commit()
        return jsonify(item_json(session.get_one(Item, items[0].id))), 201 if inserted else 200


@bp.post("/catalog/items")
def post_items() -> tuple[Response, int]:
    body = _body()
    refuse_unknown_fields(body, ("items",), 'a bulk items call (send {"items": [...]})')
    rows = _rows(body, "items")
    _objects_only(rows, "items")
    items, errors = validate_rows(rows, parse_item, unique_in="items")
    if errors:
        raise _rejected("items", errors)
    with service().sessions() as session:
        inserted, updated = upsert_items(session, items)
        session.commit()
    return jsonify({"inserted": inserted, "updated": updated}), 200


@bp.get("/catalog/items/<item_id>")
def read_item(item_id: str) -> Response:
    with service().sessions() as session:
        item = get_item(session, item_id)
        if item is None:
            raise ApiError(404, "ItemNotFound", f"No item with id {item_id!r}; create it with PUT first.", "id")
        return jsonify(item_json(item))


@bp.delete("/catalog/items/<item_id>")
def delete_item(item_id: str) -> tuple[str, int]:
    with service().sessions() as session:
        if not deactivate_item(session, item_id):
            raise ApiError(404, "ItemNotFound", f"No item with id {item_id!r}.", "id")
        session.commit()
    return "", 204


@bp.post("/interactions")
def post_interactions() -> tuple[Response, int]:
    body = _body()
    refuse_unknown_fields(body, ("interactions",), 'an interactions call (send {"interactions": [...]})')
    rows = _rows(body, "interactions")
    _objects_only(rows, "interactions")
    interactions, errors = validate_rows(rows, parse_interaction)
    if errors:
        raise _rejected("interactions", errors)
    with service().sessions() as session:
        count = add_interactions(session, interactions)
        session.commit()
    return jsonify({"inserted": count}), 201


@bp.post("/generators/train")
def train_generators() -> tuple[Response, int]:
    """Refit the candidate generators now (what `personalize train` does), e.g. after an import."""
    body = json_body(required=False)
    if body is not None and not isinstance(body, dict):
        raise ApiError(400, "BadRequest", 'The body must be empty or a JSON object like {"generators": ["als"]}.')
    if body:
        refuse_unknown_fields(body, ("generators",), 'a train call (send {"generators": ["als", ...]}, or no body to train all)')
    return jsonify(service().train_generators(body)), 200
