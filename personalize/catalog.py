"""The catalog (items) and interaction history: validation, storage, and the arrays generators fit on.

Data functions take a SQLAlchemy ``Session`` and leave commit/rollback to the caller, so an
import or an API call is one transaction: it is applied completely or not at all.

Row fields use the API's camelCase names everywhere (API bodies, JSON lines, mapped CSV
columns): items have ``id``, ``features``, ``createdAt``, ``active``; interactions have
``userId``, ``itemId``, ``type``, ``value``, ``timestamp``, ``eventId``. Times are UNIX seconds
or ISO 8601 strings.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from scipy import sparse
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from personalize.models import Interaction, Item

__all__ = [
    "ItemIn", "InteractionIn", "RowError", "InvalidRow", "TrainingData",
    "parse_item", "parse_interaction", "parse_time", "validate_rows",
    "upsert_items", "get_item", "deactivate_item", "add_interactions", "load_training_data", "item_json", "item_tokens",
]

MAX_ID_LENGTH = 256
MAX_KEY_LENGTH = 256
MAX_STRING_LENGTH = 4096
ITEM_FIELDS = ("id", "features", "createdAt", "active")
INTERACTION_FIELDS = ("userId", "itemId", "type", "value", "timestamp", "eventId")
_CHUNK = 500
_WORD = re.compile(r"(?u)\b\w\w+\b")


class InvalidRow(ValueError):
    """A row that cannot be stored; ``field`` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class RowError:
    """Why one row (1-based ``line`` in the file, or index in an API body) was rejected."""

    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.message}"


@dataclass(frozen=True)
class ItemIn:
    """A validated item. ``created_at``/``active`` None mean "now"/True for new items, unchanged otherwise."""

    id: str
    features: dict[str, Any]
    created_at: float | None = None
    active: bool | None = None


@dataclass(frozen=True)
class InteractionIn:
    user_id: str
    item_id: str
    type: str
    value: float
    timestamp: float
    event_id: str | None = None


def _identifier(row: Mapping[str, Any], key: str) -> str:
    value = row.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise InvalidRow(key, f"{key} is required and must be a non-empty string")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidRow(key, f"{key} is longer than {MAX_ID_LENGTH} characters")
    return value.strip()


def _number(value: Any, field: str) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise InvalidRow(field, f"{field} must be a number, not {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidRow(field, f"{field} must be a finite number, not {value!r}")
    return float(value)


def parse_time(text: str) -> float:
    """UNIX seconds, or an ISO 8601 date/time (UTC unless it says otherwise); ValueError otherwise."""
    try:
        return float(text)
    except ValueError:
        pass
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def _time(value: Any, field: str) -> float:
    if isinstance(value, str):
        try:
            return parse_time(value)
        except ValueError:
            raise InvalidRow(field, f"{field} must be UNIX seconds or an ISO 8601 time, not {value!r}") from None
    return _number(value, field)


def _bool(value: Any, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "false", "0", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise InvalidRow(field, f"{field} must be true or false, not {value!r}")


def _feature(key: Any, value: Any) -> Any:
    field = f"features.{key}"
    if not isinstance(key, str) or not key or key.startswith("_") or len(key) > MAX_KEY_LENGTH:
        raise InvalidRow(field, f"feature names must be 1..{MAX_KEY_LENGTH} characters and not start with '_'")
    if isinstance(value, str):
        if len(value) > MAX_STRING_LENGTH:
            raise InvalidRow(field, f"{field} is longer than {MAX_STRING_LENGTH} characters")
        return value
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return _number(value, field) if isinstance(value, float) else value
    if isinstance(value, list):
        if all(isinstance(v, str) and len(v) <= MAX_STRING_LENGTH for v in value):
            return value
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
            return value
        raise InvalidRow(field, f"{field} must be a list of strings or a list of finite numbers")
    raise InvalidRow(field, f"{field} must be a string, number, boolean or list; flatten nested objects")


def parse_item(row: Mapping[str, Any]) -> ItemIn:
    """Validate one item row; keys other than id/features/createdAt/active become features."""
    item_id = _identifier(row, "id")
    features = row.get("features") or {}
    if not isinstance(features, dict):
        raise InvalidRow("features", "features must be a JSON object of feature name to value")
    merged = {**features, **{k: v for k, v in row.items() if k not in ITEM_FIELDS and v not in (None, "")}}
    clean = {key: _feature(key, value) for key, value in merged.items()}
    created = row.get("createdAt")
    active = row.get("active")
    return ItemIn(
        id=item_id,
        features=clean,
        created_at=None if created in (None, "") else _time(created, "createdAt"),
        active=None if active in (None, "") else _bool(active, "active"),
    )


def parse_interaction(row: Mapping[str, Any], default_type: str = "view", now: float | None = None) -> InteractionIn:
    """Validate one interaction row; ``type`` defaults to ``default_type``, value to 1, timestamp to now."""
    unknown = sorted(set(row) - set(INTERACTION_FIELDS))
    if unknown:
        raise InvalidRow(unknown[0], f"unknown field {unknown[0]!r}; interactions have {', '.join(INTERACTION_FIELDS)}")
    kind = row.get("type") or default_type
    if not isinstance(kind, str) or len(kind) > 64:
        raise InvalidRow("type", "type must be a string of at most 64 characters, e.g. view, click, rating, purchase")
    value = row.get("value")
    timestamp = row.get("timestamp")
    event_id = row.get("eventId")
    return InteractionIn(
        user_id=_identifier(row, "userId"),
        item_id=_identifier(row, "itemId"),
        type=kind,
        value=1.0 if value in (None, "") else _number(value, "value"),
        timestamp=(time.time() if now is None else now) if timestamp in (None, "") else _time(timestamp, "timestamp"),
        event_id=None if event_id in (None, "") else _identifier(row, "eventId"),
    )


def validate_rows(rows: Iterable[tuple[int, Mapping[str, Any]]], parse: Any) -> tuple[list[Any], list[RowError]]:
    """Parse numbered rows with ``parse``; return the good ones and one error per bad row."""
    good, errors = [], []
    for line, row in rows:
        try:
            good.append(parse(row))
        except InvalidRow as exc:
            errors.append(RowError(line, exc.field, exc.message))
    return good, errors


def upsert_items(session: Session, items: Sequence[ItemIn], now: float | None = None) -> tuple[int, int]:
    """Insert new items and replace the features of existing ones; returns (inserted, updated)."""
    now = time.time() if now is None else now
    latest = {item.id: item for item in items}  # the last row for an id wins, as in a sequence of PUTs
    ids = list(latest)
    existing: set[str] = set()
    for start in range(0, len(ids), _CHUNK):
        existing.update(session.scalars(select(Item.id).where(Item.id.in_(ids[start:start + _CHUNK]))))
    new = [
        {"id": i.id, "features": i.features, "created_at": now if i.created_at is None else i.created_at,
         "updated_at": now, "active": True if i.active is None else i.active}
        for i in latest.values() if i.id not in existing
    ]
    changed = []
    for i in latest.values():
        if i.id in existing:
            row: dict[str, Any] = {"id": i.id, "features": i.features, "updated_at": now}
            if i.created_at is not None:
                row["created_at"] = i.created_at
            if i.active is not None:
                row["active"] = i.active
            changed.append(row)
    if new:
        session.execute(insert(Item), new)
    for keys in {tuple(sorted(row)) for row in changed}:  # bulk UPDATE by primary key needs uniform rows
        session.execute(update(Item), [row for row in changed if tuple(sorted(row)) == keys])
    return len(new), len(changed)


def get_item(session: Session, item_id: str) -> Item | None:
    return session.get(Item, item_id)


def deactivate_item(session: Session, item_id: str, now: float | None = None) -> bool:
    """Stop proposing an item (history keeps pointing at it); False if there is no such item."""
    item = session.get(Item, item_id)
    if item is None:
        return False
    item.active = False
    item.updated_at = time.time() if now is None else now
    return True


def add_interactions(session: Session, rows: Sequence[InteractionIn]) -> int:
    if rows:
        session.execute(insert(Interaction), [
            {"user_id": r.user_id, "item_id": r.item_id, "type": r.type, "value": r.value,
             "timestamp": r.timestamp, "event_id": r.event_id}
            for r in rows
        ])
    return len(rows)


def item_tokens(features: Mapping[str, Any]) -> list[str]:
    """The terms of one item: words of its text features, ``key=value`` of its categorical (list) ones.

    Numbers are left out: they are measurements, not words. Used by the ``content`` generator
    and by the diversity ordering.
    """
    tokens: list[str] = []
    for key, value in features.items():
        if isinstance(value, str):
            tokens.extend(_WORD.findall(value.lower()))
        elif isinstance(value, list):
            tokens.extend(f"{key}={v.lower()}" for v in value if isinstance(v, str))
        elif value is True:
            tokens.append(key)
    return tokens


def item_json(item: Item) -> dict[str, Any]:
    """The API representation of an item."""
    def iso(ts: float) -> str:
        return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat().replace("+00:00", "Z")

    return {"id": item.id, "features": item.features, "createdAt": iso(item.created_at),
            "updatedAt": iso(item.updated_at), "active": item.active}


@dataclass(frozen=True)
class TrainingData:
    """The catalog and interactions as index-aligned arrays: what generators fit on.

    Items are in a fixed order (``item_ids``); interactions are parallel arrays of user index,
    item index, value and timestamp. Interactions on items missing from the catalog are
    dropped. ``user_items`` sums the positive values per (user, item): the implicit-feedback
    matrix that collaborative filtering learns from.
    """

    item_ids: tuple[str, ...]
    item_features: tuple[dict[str, Any], ...]
    item_created: np.ndarray
    item_active: np.ndarray
    user_ids: tuple[str, ...]
    users: np.ndarray
    items: np.ndarray
    values: np.ndarray
    timestamps: np.ndarray

    @classmethod
    def build(
        cls,
        items: Iterable[tuple[str, dict[str, Any], float, bool]],
        interactions: Iterable[tuple[str, str, float, float]],
    ) -> "TrainingData":
        """From ``(id, features, created_at, active)`` items and ``(user, item, value, timestamp)`` rows."""
        item_rows = list(items)
        index = {row[0]: i for i, row in enumerate(item_rows)}
        user_index: dict[str, int] = {}
        users, item_pos, values, stamps = [], [], [], []
        for user, item, value, ts in interactions:
            position = index.get(item)
            if position is None:
                continue
            users.append(user_index.setdefault(user, len(user_index)))
            item_pos.append(position)
            values.append(value)
            stamps.append(ts)
        return cls(
            item_ids=tuple(row[0] for row in item_rows),
            item_features=tuple(row[1] for row in item_rows),
            item_created=np.array([row[2] for row in item_rows], dtype=np.float64),
            item_active=np.array([row[3] for row in item_rows], dtype=bool),
            user_ids=tuple(user_index),
            users=np.array(users, dtype=np.int32),
            items=np.array(item_pos, dtype=np.int32),
            values=np.array(values, dtype=np.float64),
            timestamps=np.array(stamps, dtype=np.float64),
        )

    def with_interactions(self, mask: np.ndarray) -> "TrainingData":
        """The same catalog and users with only the interactions where ``mask`` is true (for splits)."""
        return TrainingData(
            self.item_ids, self.item_features, self.item_created, self.item_active, self.user_ids,
            self.users[mask], self.items[mask], self.values[mask], self.timestamps[mask],
        )

    @cached_property
    def item_index(self) -> dict[str, int]:
        return {item: i for i, item in enumerate(self.item_ids)}

    @cached_property
    def user_index(self) -> dict[str, int]:
        return {user: i for i, user in enumerate(self.user_ids)}

    @cached_property
    def user_items(self) -> sparse.csr_matrix:
        positive = self.values > 0
        matrix = sparse.csr_matrix(
            (self.values[positive], (self.users[positive], self.items[positive])),
            shape=(len(self.user_ids), len(self.item_ids)),
        )
        matrix.sum_duplicates()
        return matrix


def load_training_data(session: Session) -> TrainingData:
    """Everything in the store, for ``fit``: all items (inactive ones too, generators skip them) and interactions."""
    items = session.execute(select(Item.id, Item.features, Item.created_at, Item.active).order_by(Item.id))
    interactions = session.execute(
        select(Interaction.user_id, Interaction.item_id, Interaction.value, Interaction.timestamp)
        .order_by(Interaction.timestamp, Interaction.id)
    )
    return TrainingData.build(
        ((row.id, row.features or {}, row.created_at, row.active) for row in items),
        ((row.user_id, row.item_id, row.value, row.timestamp) for row in interactions),
    )
