"""Catalog and interaction endpoints: what the candidate generators learn from.

- ``PUT    /personalizer/v1.0/catalog/items/<id>``: create or replace one item
- ``POST   /personalizer/v1.0/catalog/items``: bulk upsert ``{"items": [...]}``
- ``GET    /personalizer/v1.0/catalog/items/<id>``: one item
- ``DELETE /personalizer/v1.0/catalog/items/<id>``: deactivate (history keeps pointing at it)
- ``POST   /personalizer/v1.0/interactions``: bulk insert ``{"interactions": [...]}``

Bodies are checked against their schemas (personalize/api/schemas.py, also /openapi.json), then
row by row by the catalog's parsers (shared with `personalize import`). Bulk calls are
all-or-nothing: one bad row rejects the call, and the error names every bad row (an id sent
twice in one items call is a bad row too). A body field the call does not take is a
``400 UnknownField``: a misspelling is never silently ignored.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from personalize.api._common import json_body, service
from personalize.api.errors import ApiError
from personalize.catalog import (
    DimensionCheck, ItemIn, RowError, add_interactions, catalog_dimension, deactivate_item, get_item, item_json, parse_interaction,
    parse_item, upsert_items, validate_rows,
)
from personalize.models import Item

__all__ = ["bp"]

bp = Blueprint("catalog", __name__, url_prefix="/personalizer/v1.0")

def _body(schema: str) -> dict[str, Any]:
    """The request body, checked against ``schema`` (personalize/api/schemas.py: fields, types, limits)."""
    body = json_body()
    service().schemas.check(schema, body)
    return body


def _rejected(key: str, errors: list[RowError], status: int = 400, code: str = "InvalidRows", field: str = "") -> ApiError:
    details = "; ".join(f"{key}[{e.line}].{e.field}: {e.message}" for e in errors[:10])
    more = f" (and {len(errors) - 10} more)" if len(errors) > 10 else ""
    target = f"{key}[{errors[0].line}]" + (f".{field}" if field else "")
    return ApiError(status, code, f"{len(errors)} row(s) rejected, nothing stored: {details}{more}", target)


def _dimension_errors(session: Any, items: list[ItemIn]) -> list[RowError]:
    """Rows (all good, so their index is their position in the body) whose vector has another dimension than the
    catalog's. A 422, not a 400: each row is well-formed, and which dimension is right depends on what is stored."""
    if not any(item.dimension for item in items):
        return []
    check = DimensionCheck(catalog_dimension(session))
    return [RowError(line, "embedding", message) for line, item in enumerate(items)
            if (message := check.problem(item)) is not None]


@bp.put("/catalog/items/<item_id>")
def put_item(item_id: str) -> tuple[Response, int]:
    body = _body("ItemBody")
    if "id" in body and body["id"] != item_id:
        raise ApiError(400, "BadRequest", f"The body's id {body['id']!r} differs from the URL's {item_id!r}; drop one.", "id")
    items, errors = validate_rows([(0, {**body, "id": item_id})], parse_item)
    if errors:
        raise ApiError(400, "InvalidItem", errors[0].message, errors[0].field)
    with service().sessions() as session:
        mismatched = _dimension_errors(session, items)
        if mismatched:
            raise ApiError(422, "DimensionMismatch", mismatched[0].message, "embedding")
        inserted, _ = upsert_items(session, items)
        session.commit()
        return jsonify(item_json(session.get_one(Item, items[0].id))), 201 if inserted else 200


@bp.post("/catalog/items")
def post_items() -> tuple[Response, int]:
    body = _body("ItemsRequest")
    items, errors = validate_rows(enumerate(body["items"]), parse_item, unique_in="items")
    if errors:
        raise _rejected("items", errors)
    with service().sessions() as session:
        mismatched = _dimension_errors(session, items)
        if mismatched:
            raise _rejected("items", mismatched, 422, "DimensionMismatch", "embedding")
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
    body = _body("InteractionsRequest")
    interactions, errors = validate_rows(enumerate(body["interactions"]), parse_interaction)
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
    if body is not None or request.content_length:  # no body trains all; a JSON null is not an object
        service().schemas.check("TrainRequest", body)
    return jsonify(service().train_generators(body)), 200
