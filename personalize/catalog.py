"""The catalog (items) and interaction history: validation, storage, and the arrays generators fit on.

Data functions take a SQLAlchemy ``Session`` and leave commit/rollback to the caller, so an
import or an API call is one transaction: it is applied completely or not at all.

Row fields use the API's camelCase names everywhere (API bodies, JSON lines, mapped CSV
columns): items have ``id``, ``features``, ``createdAt``, ``active``, ``embedding``; interactions have
``userId``, ``itemId``, ``type``, ``value``, ``timestamp``, ``eventId``. Times are UNIX seconds
or ISO 8601 strings, from year 1 to 9999 UTC (what ``datetime`` and the API's ISO answers can
show). Ids follow the rule Rank's ids do (``id_problem``: non-empty, at most ``MAX_ID_LENGTH``
characters, no control characters) and are never trimmed: leading or trailing whitespace is an error, and item ids cannot contain
``/`` (they are a segment of ``/catalog/items/{id}``). Interaction values are finite and at
most ``MAX_INTERACTION_VALUE`` in magnitude, which the generators' float32 maths handle. Rows nest
at most ``MAX_NESTING`` arrays and objects deep; deeper ones are refused before anything recurses
into them, and error messages show scalars only (``brief``), never a deep value's repr.

An item's ``embedding`` is a vector computed by any model the user likes (a list of finite
numbers, at most ``MAX_EMBEDDING_DIMENSION``); all vectors of a catalog share one dimension
(``DimensionCheck``), and each is stored as little-endian float32 bytes (``embedding_vector`` reads them).
Absent or null leaves a stored vector unchanged; an empty list removes it.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from functools import cached_property
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from scipy import sparse
from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from personalize.features import MAX_MAGNITUDE
from personalize.models import Interaction, Item

__all__ = [
    "ItemIn", "InteractionIn", "RowError", "InvalidRow", "TrainingData",
    "id_problem", "parse_item", "parse_interaction", "parse_time", "validate_rows",
    "upsert_items", "get_item", "deactivate_item", "add_interactions", "load_training_data", "item_json", "item_tokens",
    "MAX_ID_LENGTH", "MAX_INTERACTION_VALUE", "RATING_TYPE", "MAX_ITEM_FEATURES", "MAX_NESTING", "MIN_TIME", "MAX_TIME", "ID_FORBIDDEN",
    "ITEM_FIELDS", "ITEM_LOOKALIKES", "MAX_TYPE_LENGTH", "PATH_SEGMENT_IDS", "brief", "nesting_problem", "catalog_key",
    "MAX_EMBEDDING_DIMENSION", "MIN_EMBEDDING_COMPONENT", "DimensionCheck", "catalog_dimension", "embedding_vector",
]

MAX_ID_LENGTH = 256
#: The characters no id may hold (a regex class body): the control characters, Unicode category Cc.
#: The API's schemas use the same class (personalize/api/schemas.py).
ID_FORBIDDEN = "\\x00-\\x1f\\x7f-\\x9f"
_CONTROL = re.compile(f"[{ID_FORBIDDEN}]")
MAX_TYPE_LENGTH = 64
#: Item ids that HTTP clients rewrite as path segments: /catalog/items/.. would never reach the item.
PATH_SEGMENT_IDS = (".", "..")
MAX_KEY_LENGTH = 256
MAX_STRING_LENGTH = 4096
#: Largest |value| of an interaction: summed per (user, item) and squared in float32 by the generators
#: (ALS fails with NaN factors around 1e20); ratings, counts and amounts fit far below it.
MAX_INTERACTION_VALUE = 1e6
#: Deepest nesting of arrays and objects in one catalog row: the row is level 1, its features object 2
#: and a list feature 3, all a row needs. Deeper values (an array nested 1,000 deep made Python's repr
#: raise RecursionError, a 500) are refused first, naming the field.
MAX_NESTING = 8
#: Most feature entries of one item (names plus list elements). A Rank by userId counts its candidates'
#: features toward max_features (default 5,000 for all candidates and the context), so items that big
#: only fit a few at a time; this bound keeps one item far inside it and its storage small.
MAX_ITEM_FEATURES = 1_000
#: Times the API can store and show back: 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z in UNIX seconds.
MIN_TIME = -62135596800.0
MAX_TIME = 253402300799.0
ITEM_FIELDS = ("id", "features", "createdAt", "active", "embedding")
#: Item row keys that look like a misspelled field rather than a feature (compared without case, "_" or "-").
_ITEM_LOOKALIKES = {"id": "id", "features": "features", "feature": "features", "createdat": "createdAt",
                    "active": "active", "updatedat": "updatedAt", "embedding": "embedding", "embeddings": "embedding"}
#: Most dimensions of an item vector: text-embedding models give 384 to 3,072.
MAX_EMBEDDING_DIMENSION = 4096
#: A vector needs a component at least this large in magnitude: smaller ones are zeros in float32's maths.
MIN_EMBEDDING_COMPONENT = 1e-30
#: How a vector is stored: little-endian float32, 4 bytes a dimension.
_EMBEDDING_DTYPE = np.dtype("<f4")
ITEM_LOOKALIKES = tuple(_ITEM_LOOKALIKES)
#: The interaction type of explicit ratings: their value is the rating (``import movielens`` stores its ratings so).
RATING_TYPE = "rating"
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
    """A validated item. ``created_at``/``active`` None mean "now"/True for new items, unchanged otherwise.

    ``embedding``: the vector as float32 bytes; None leaves a stored one unchanged, ``b""`` removes it.
    """

    id: str
    features: dict[str, Any]
    created_at: float | None = None
    active: bool | None = None
    embedding: bytes | None = None

    @property
    def dimension(self) -> int:
        """Dimensions of the vector sent (0 when none)."""
        return len(self.embedding or b"") // _EMBEDDING_DTYPE.itemsize


@dataclass(frozen=True)
class InteractionIn:
    user_id: str
    item_id: str
    type: str
    value: float
    timestamp: float
    event_id: str | None = None


def brief(value: Any) -> str:
    """``value`` for an error message: a scalar's repr (cut at 80 characters), an array or object by its
    kind, so a huge or deeply nested value never makes a huge message or a RecursionError."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def nesting_problem(value: Any, limit: int = MAX_NESTING) -> str | None:
    """The path (``features.tags[0]``) of the first array or object nested deeper than ``limit`` levels
    in ``value`` (itself level 1), or None. Iterative: any depth orjson parses is safe to check."""
    stack: list[tuple[Any, str, int]] = [(value, "", 1)]
    while stack:
        node, path, depth = stack.pop()
        if isinstance(node, dict):
            children = [(f"{path}.{key}" if path else str(key), child) for key, child in node.items()
                        if isinstance(child, (dict, list))]
        elif isinstance(node, list):
            children = [(f"{path}[{i}]", child) for i, child in enumerate(node) if isinstance(child, (dict, list))]
        else:
            continue
        if depth > limit:
            return path
        stack.extend((child, child_path, depth + 1) for child_path, child in children)
    return None


def _check_nesting(row: Mapping[str, Any]) -> None:
    path = nesting_problem(row)
    if path is not None:
        raise InvalidRow(path.split(".")[0].split("[")[0], f"{path} is nested deeper than {MAX_NESTING} levels of arrays and "
                         "objects (a row, its features object and a list feature need 3); flatten it")


def id_problem(value: Any) -> str | None:
    """What is wrong with ``value`` as an id, or None: the one rule for Rank's ids and the catalog's."""
    if not isinstance(value, str) or not value:
        return "must be a non-empty string"
    if len(value) > MAX_ID_LENGTH:
        return f"is longer than {MAX_ID_LENGTH} characters; use a shorter id"
    if _CONTROL.search(value):
        return "contains control characters; remove them"
    return None


def _identifier(row: Mapping[str, Any], key: str, what: str) -> str:
    """An id by ``id_problem``'s rule (numbers are taken as text), never trimmed."""
    value = row.get(key)
    if isinstance(value, int) and not isinstance(value, bool) or isinstance(value, float) and math.isfinite(value):
        value = str(value)
    problem = id_problem(value)
    if problem is not None:
        raise InvalidRow(key, f"{key} {problem} ({what})")
    if value != value.strip():
        raise InvalidRow(key, f"{key} {value!r} has leading or trailing whitespace; remove it (ids are matched exactly, never trimmed)")
    return value


def _number(value: Any, field: str, bound: str = "") -> float:
    """A finite number (from a number or a numeric string); ``bound`` is added to the error message."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidRow(field, f"{field} must be a finite number{bound}, not {brief(value)}")
    try:
        number = float(value)  # an int beyond float range raises OverflowError
    except ValueError:
        raise InvalidRow(field, f"{field} must be a number{bound}, not {brief(value)}") from None
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise InvalidRow(field, f"{field} must be a finite number{bound}, not {brief(value)}")
    return number


class _TimeOutOfRange(ValueError):
    """A time that parses but is not finite or outside years 1..9999 UTC."""


def parse_time(value: str | float) -> float:
    """UNIX seconds (a number or numeric text), or ISO 8601 text (UTC unless it says otherwise);
    ValueError otherwise. Non-finite values and times outside years 1..9999 UTC (what ``datetime``,
    hence the API's ISO answers, can show) are a ValueError too."""
    try:
        seconds = float(value)
    except OverflowError:  # an int beyond float range
        seconds = math.inf
    except ValueError:  # not a number: ISO 8601 text, or a ValueError from fromisoformat
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        seconds = (parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).timestamp()
    if not MIN_TIME <= seconds <= MAX_TIME:  # also nan
        raise _TimeOutOfRange(f"{brief(value)} is not a time from 0001-01-01 to 9999-12-31 UTC")
    return seconds


def _time(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidRow(field, f"{field} must be UNIX seconds or an ISO 8601 time, not {brief(value)}")
    try:
        return parse_time(value)
    except _TimeOutOfRange:
        raise InvalidRow(field, f"{field} must be a finite time from 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z "
                                f"(UNIX seconds {MIN_TIME:.0f} to {MAX_TIME:.0f}), not {brief(value)}") from None
    except ValueError:
        raise InvalidRow(field, f"{field} must be UNIX seconds or an ISO 8601 time, not {brief(value)}") from None


def _bool(value: Any, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "false", "0", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise InvalidRow(field, f"{field} must be true or false, not {brief(value)}")


def _feature_number(value: Any) -> bool:
    """A number VW can learn from (Rank's limit, ``features.MAX_MAGNITUDE``: a stored item with a larger
    one would fail every Rank proposing it); False for nan, inf and huge ints."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and -MAX_MAGNITUDE <= value <= MAX_MAGNITUDE


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
        if not _feature_number(value):
            raise InvalidRow(field, f"{field} must be a finite number within +-{MAX_MAGNITUDE:g}, not {brief(value)}; "
                                    "rescale it (e.g. hours since a start time instead of UNIX seconds, or its log)")
        return value
    if isinstance(value, list):
        if all(isinstance(v, str) and 0 < len(v) <= MAX_STRING_LENGTH and v[0] != "_" for v in value):
            return value  # strings become feature names in Rank: none is empty, VW reserves names starting with '_'
        if all(_feature_number(v) for v in value):
            return value
        raise InvalidRow(field, f"{field} must be a list of strings (not empty, not starting with '_') or a list of finite numbers "
                                f"within +-{MAX_MAGNITUDE:g}")
    raise InvalidRow(field, f"{field} must be a string, number, boolean or list; flatten nested objects")


def parse_item(row: Mapping[str, Any]) -> ItemIn:
    """Validate one item row; keys other than id/features/createdAt/active become features.

    A key that looks like a misspelled field (``created_at``, ``Active``, ``updatedAt``, ...) is an
    error rather than a feature, and so is a key given both in the row and in ``features``.
    """
    _check_nesting(row)
    item_id = _identifier(row, "id", "the item's id")
    if item_id in PATH_SEGMENT_IDS:
        raise InvalidRow("id", f"id {item_id!r} is a path segment that HTTP clients rewrite in /catalog/items/{{id}}; "
                         "use another id")
    if "/" in item_id:
        raise InvalidRow("id", f"id {item_id!r} contains '/'; item ids appear in URL paths (/catalog/items/{{id}}), "
                               "so use another character")
    features = row.get("features") or {}
    if not isinstance(features, dict):
        raise InvalidRow("features", "features must be a JSON object of feature name to value")
    for key in row:
        if key in ITEM_FIELDS or not isinstance(key, str):
            continue
        meant = _ITEM_LOOKALIKES.get(key.lower().replace("_", "").replace("-", ""))
        if meant == "updatedAt":
            raise InvalidRow(key, f"{key} is set by the service, not sent; drop it (or put it inside features if it is a feature)")
        if meant is not None:
            raise InvalidRow(key, f"{key} looks like a misspelled {meant}; item fields are {', '.join(ITEM_FIELDS)} "
                                  "(put it inside features if it is a feature)")
        if key in features:
            raise InvalidRow(key, f"{key} is both a field of the row and a key of features; send it once")
    merged = {**features, **{k: v for k, v in row.items() if k not in ITEM_FIELDS and v not in (None, "")}}
    entries = len(merged) + sum(len(value) for value in merged.values() if isinstance(value, list))
    if entries > MAX_ITEM_FEATURES:
        raise InvalidRow("features", f"features has {entries} entries (names and list elements); an item has at most "
                                     f"{MAX_ITEM_FEATURES}: keep the features the bandit and generators learn from")
    clean = {key: _feature(key, value) for key, value in merged.items()}
    created = row.get("createdAt")
    active = row.get("active")
    return ItemIn(
        id=item_id,
        features=clean,
        created_at=None if created in (None, "") else _time(created, "createdAt"),
        active=None if active in (None, "") else _bool(active, "active"),
        embedding=_embedding(row.get("embedding")),
    )


def _embedding(value: Any) -> bytes | None:
    """A vector as float32 bytes; None for "unchanged", b"" for "remove"."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise InvalidRow("embedding", f"embedding must be a list of numbers (the item's vector), not {brief(value)}")
    if len(value) > MAX_EMBEDDING_DIMENSION:
        raise InvalidRow("embedding", f"embedding has {len(value)} dimensions; at most {MAX_EMBEDDING_DIMENSION} are "
                                      "accepted (reduce it, e.g. with the model's smaller output or PCA)")
    for i, v in enumerate(value):
        if not _feature_number(v):
            raise InvalidRow("embedding", f"embedding[{i}] must be a finite number within +-{MAX_MAGNITUDE:g}, not "
                                          f"{brief(v)}")
    if value and not any(abs(v) >= MIN_EMBEDDING_COMPONENT for v in value):
        raise InvalidRow("embedding", f"embedding is all zeros (no component of magnitude {MIN_EMBEDDING_COMPONENT:g} or "
                                      "more); a vector needs a direction (items are compared by the angle between "
                                      "vectors); send [] to remove the item's vector")
    return np.asarray(value, dtype=_EMBEDDING_DTYPE).tobytes()


def embedding_vector(data: bytes | None) -> np.ndarray | None:
    """A stored vector as float32, or None."""
    return None if not data else np.frombuffer(data, dtype=_EMBEDDING_DTYPE)


def catalog_dimension(session: Session) -> int | None:
    """The dimension of the catalog's stored vectors (None when no item has one): that of the first item found
    with a vector, since all share one. Two uploads racing into a catalog without vectors can both pass the
    check (PostgreSQL); training then keeps the most common dimension (``_vector_matrix``)."""
    length = session.scalar(select(func.length(Item.embedding)).where(Item.embedding.is_not(None)).limit(1))
    return None if length is None else int(length) // _EMBEDDING_DTYPE.itemsize


class DimensionCheck:
    """Every vector of a catalog has one dimension: the stored vectors', or in an empty catalog the first one sent.

    ``problem(item)`` says what is wrong with one parsed item's vector, naming the expected and the
    received dimension; calling the check raises it as that row's ``InvalidRow`` (for imports:
    ``validate_rows(rows, lambda row: check(parse_item(row)))``).
    """

    def __init__(self, stored: int | None) -> None:
        self.expected = stored
        self.stored = stored is not None

    def problem(self, item: ItemIn) -> str | None:
        got = item.dimension
        if not got:
            return None
        if self.expected is None:
            self.expected = got
            return None
        if got == self.expected:
            return None
        where = "the catalog's stored vectors have" if self.stored else "the first vector in this upload has"
        return (f"embedding has {got} dimensions but {where} {self.expected}; every item of a catalog needs the same "
                f"dimension (expected {self.expected}, got {got}). To switch models, first remove the old vectors "
                "(send \"embedding\": [] per item)")

    def __call__(self, item: ItemIn) -> ItemIn:
        message = self.problem(item)
        if message is not None:
            raise InvalidRow("embedding", message)
        return item


def parse_interaction(row: Mapping[str, Any], default_type: str = "view", now: float | None = None) -> InteractionIn:
    """Validate one interaction row; ``type`` defaults to ``default_type``, value to 1, timestamp to now."""
    _check_nesting(row)
    unknown = sorted(set(row) - set(INTERACTION_FIELDS))
    if unknown:
        raise InvalidRow(unknown[0], f"unknown field {unknown[0]!r}; interactions have {', '.join(INTERACTION_FIELDS)}")
    user_id = _identifier(row, "userId", "the user who interacted, as sent to Rank")
    item_id = _identifier(row, "itemId", "the catalog item's id")
    kind = row.get("type") or default_type
    if not isinstance(kind, str) or len(kind) > MAX_TYPE_LENGTH or _CONTROL.search(kind):
        raise InvalidRow("type", f"type must be a string of at most {MAX_TYPE_LENGTH} characters without control characters, "
                                 "e.g. view, click, rating, purchase")
    value = row.get("value")
    bound = f" with |value| <= {MAX_INTERACTION_VALUE:.0e} (1,000,000)"
    number = 1.0 if value in (None, "") else _number(value, "value", bound)
    if abs(number) > MAX_INTERACTION_VALUE:
        raise InvalidRow("value", f"value must be a number{bound}, not {brief(value)}; scale the values down "
                                  "(e.g. to a rating or a count)")
    timestamp = row.get("timestamp")
    event_id = row.get("eventId")
    return InteractionIn(
        user_id=user_id,
        item_id=item_id,
        type=kind,
        value=number,
        timestamp=(time.time() if now is None else now) if timestamp in (None, "") else _time(timestamp, "timestamp"),
        event_id=None if event_id in (None, "") else _identifier(row, "eventId", "the Rank event it came from"),
    )


def validate_rows(rows: Iterable[tuple[int, Mapping[str, Any]]], parse: Any,
                  unique_in: str | None = None) -> tuple[list[Any], list[RowError]]:
    """Parse numbered rows with ``parse``; return the good ones and one error per bad row.

    ``unique_in`` (the rows' list, e.g. ``"items"``): a row repeating an earlier row's ``id`` is a bad
    row, never collapsed silently.
    """
    good, errors = [], []
    first: dict[str, int] = {}
    for line, row in rows:
        try:
            parsed = parse(row)
        except InvalidRow as exc:
            errors.append(RowError(line, exc.field, exc.message))
            continue
        if unique_in is not None:
            if parsed.id in first:
                errors.append(RowError(line, "id", f"id {parsed.id!r} is also {unique_in}[{first[parsed.id]}]; send each id "
                                                   "once per call (merge the two rows)"))
                continue
            first[parsed.id] = line
        good.append(parsed)
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
         "updated_at": now, "active": True if i.active is None else i.active, "embedding": i.embedding or None}
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
            if i.embedding is not None:
                row["embedding"] = i.embedding or None
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

    out = {"id": item.id, "features": item.features, "createdAt": iso(item.created_at),
           "updatedAt": iso(item.updated_at), "active": item.active}
    vector = embedding_vector(item.embedding)
    if vector is not None:
        out["embedding"] = [float(str(x)) for x in vector]  # float32's shortest text: 0.1, not 0.10000000149
    return out


def catalog_key(item_ids: Iterable[str]) -> bytes:
    """A digest of a catalog's item ids in order: equal keys mean equal positions, so a per-item mask
    made in one catalog order (a Rank's metadata filter) applies unchanged to a generator fitted on it.
    Ids hold no control characters, so NUL separates them unambiguously."""
    digest = hashlib.blake2b(digest_size=16)
    for item_id in item_ids:
        digest.update(item_id.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    return digest.digest()


@dataclass(frozen=True)
class TrainingData:
    """The catalog and interactions as index-aligned arrays: what generators fit on.

    Items are in a fixed order (``item_ids``); interactions are parallel arrays of user index,
    item index, value and timestamp. Interactions on items missing from the catalog are
    dropped. ``user_items`` sums the positive values per (user, item): the implicit-feedback
    matrix that collaborative filtering learns from. ``is_rating`` marks explicit ratings, whose
    value is the rating itself (interactions of type ``RATING_TYPE``), for rating predictors (svd).
    ``item_vectors`` holds the catalog's
    ``embedding`` vectors, one float32 row per item, a row of zeros for an item without one
    (None when no item has one).
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
    is_rating: np.ndarray
    item_vectors: np.ndarray | None = None

    @classmethod
    def build(
        cls,
        items: Iterable[tuple[str, dict[str, Any], float, bool] | tuple[str, dict[str, Any], float, bool, Any]],
        interactions: Iterable[tuple[str, str, float, float] | tuple[str, str, float, float, str]],
    ) -> "TrainingData":
        """From ``(id, features, created_at, active[, embedding])`` items and ``(user, item, value, timestamp[, type])`` rows.

        An embedding is float32 bytes as stored, a list of numbers, or None. A row without a type is taken
        as a rating (``(user, item, rating, timestamp)`` is how the MovieLens loaders and hand-built test
        data come); the store's rows always carry their type.
        """
        item_rows = list(items)
        index = {row[0]: i for i, row in enumerate(item_rows)}
        user_index: dict[str, int] = {}
        users, item_pos, values, stamps, ratings = [], [], [], [], []
        for user, item, value, ts, *kind in interactions:
            position = index.get(item)
            if position is None:
                continue
            users.append(user_index.setdefault(user, len(user_index)))
            item_pos.append(position)
            values.append(value)
            stamps.append(ts)
            ratings.append(not kind or kind[0] == RATING_TYPE)
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
            is_rating=np.array(ratings, dtype=bool),
            item_vectors=_vector_matrix([row[4] if len(row) > 4 else None for row in item_rows]),
        )

    def with_interactions(self, mask: np.ndarray) -> "TrainingData":
        """The same catalog and users with only the interactions where ``mask`` is true (for splits)."""
        return replace(
            self, users=self.users[mask], items=self.items[mask], values=self.values[mask],
            timestamps=self.timestamps[mask], is_rating=self.is_rating[mask],
        )

    def ratings(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """User positions, item positions and values of the explicit ratings, in data order; a
        re-rated item keeps only its latest rating (by timestamp, then data order)."""
        rows = np.flatnonzero(self.is_rating)
        rows = rows[np.lexsort((rows, self.timestamps[rows]))][::-1]  # newest first (ties: the later row)
        _, first = np.unique(self.users[rows].astype(np.int64) * max(len(self.item_ids), 1) + self.items[rows],
                             return_index=True)
        keep = np.sort(rows[first])
        return self.users[keep], self.items[keep], self.values[keep]

    @cached_property
    def item_index(self) -> dict[str, int]:
        return {item: i for i, item in enumerate(self.item_ids)}

    @cached_property
    def catalog_key(self) -> bytes:
        return catalog_key(self.item_ids)

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


def _vector_matrix(vectors: Sequence[Any]) -> np.ndarray | None:
    """One float32 row per item (zeros for none). Vectors of another dimension than the most common one
    (only possible if two uploads raced in an empty catalog) are left out, as if missing."""
    arrays = [None if v is None else (embedding_vector(v) if isinstance(v, (bytes, bytearray, memoryview))
                                      else np.asarray(v, dtype=_EMBEDDING_DTYPE)) for v in vectors]
    dims = Counter(len(a) for a in arrays if a is not None and len(a))
    if not dims:
        return None
    dimension = dims.most_common(1)[0][0]
    matrix = np.zeros((len(arrays), dimension), dtype=np.float32)
    for i, a in enumerate(arrays):
        if a is not None and len(a) == dimension:
            matrix[i] = a
    return matrix


def load_training_data(session: Session) -> TrainingData:
    """Everything in the store, for ``fit``: all items (inactive ones too, generators skip them) and interactions."""
    items = session.execute(select(Item.id, Item.features, Item.created_at, Item.active, Item.embedding).order_by(Item.id))
    interactions = session.execute(
        select(Interaction.user_id, Interaction.item_id, Interaction.value, Interaction.timestamp, Interaction.type)
        .order_by(Interaction.timestamp, Interaction.id)
    )
    return TrainingData.build(
        ((row.id, row.features or {}, row.created_at, row.active, row.embedding) for row in items),
        ((row.user_id, row.item_id, row.value, row.timestamp, row.type) for row in interactions),
    )
