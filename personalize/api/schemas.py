"""The HTTP API's one source of truth: JSON Schemas for every body and the operations that use them.

``/openapi.json`` is built from ``OPERATIONS`` and ``components(settings)``, and request bodies
are validated against the same schemas (compiled once by jsonschema-rs, a JSON Schema 2020-12
validator, which is what OpenAPI 3.1 uses): the document and the validation cannot drift.
Rules a schema cannot state (unique action ids, ``excludedActions`` within the actions, a
feature given twice in one list, an item field given twice) are checked by the service after
the schema and named in the schemas' descriptions. Rank's feature lists are the one part checked
by code instead (personalize/features.py, on the hot path); a property test holds the two equal. Names follow the Personalizer REST spec
(RankRequest, RankableAction, RankResponse, RankedAction, RewardRequest, ErrorResponse).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import jsonschema_rs
import orjson

from personalize.api.errors import ApiError
from personalize.catalog import (
    ID_FORBIDDEN, ITEM_FIELDS, ITEM_LOOKALIKES, MAX_EMBEDDING_DIMENSION, MIN_EMBEDDING_COMPONENT, MAX_ID_LENGTH, MAX_INTERACTION_VALUE, MAX_NESTING, MAX_TIME,
    MAX_TYPE_LENGTH, MIN_TIME, PATH_SEGMENT_IDS, nesting_problem,
)
from personalize.config import Settings
from personalize.features import ACTION_ID_NAMESPACE, MAX_DEPTH, MAX_KEY_LENGTH, MAX_MAGNITUDE, MAX_STRING_LENGTH
from personalize.filters import EQUALITY, MAX_FILTER_FIELDS, MAX_FILTER_VALUES, RANGES
from personalize import service_config

__all__ = ["Operation", "OPERATIONS", "PREFIXES", "MAX_BULK_ROWS", "RequestSchemas", "components", "openapi_document",
           "BINARY", "BINARY_BODY_ENDPOINTS"]

#: Most rows in one bulk call; larger loads belong in `personalize import`.
MAX_BULK_ROWS = 10_000
#: Where every operation lives: Personalizer v1.0, and the prefix of the 2022-09-01-preview SDK
#: (which adds ``?api-version=...``).
PREFIXES = ("/personalizer/v1.0", "/personalizer")
PREVIEW_PREFIX = "/personalizer"
_REF = "#/components/schemas/"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


# -- ids, features, times ---------------------------------------------------------------------
def _id(what: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH, "pattern": f"^[^{ID_FORBIDDEN}]*$",
            "description": f"{what}: 1 to {MAX_ID_LENGTH} characters, no control characters.", **(extra or {})}


def _catalog_id(what: str, slash: bool = True) -> dict[str, Any]:
    """Catalog ids are matched exactly and never trimmed: no leading or trailing whitespace."""
    edge = f"[^\\s{ID_FORBIDDEN}{'' if slash else '/'}]"
    inner = f"[^{ID_FORBIDDEN}{'' if slash else '/'}]"
    rule = "" if slash else ", no '/' and not '.' or '..' (item ids are a segment of the URL /catalog/items/{id})"
    schema = {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH, "pattern": f"^{edge}({inner}*{edge})?$",
              "description": f"{what}: 1 to {MAX_ID_LENGTH} characters, no control characters, no leading or "
                             f"trailing whitespace{rule}."}
    return schema if slash else {**schema, "not": {"enum": list(PATH_SEGMENT_IDS)}}


_NUMBER = {"type": "number", "minimum": -MAX_MAGNITUDE, "maximum": MAX_MAGNITUDE,
           "description": f"Numbers are within +-{MAX_MAGNITUDE:g}: VW learns in float32 and larger values overflow it; "
                          "rescale the feature (e.g. hours since a start time instead of UNIX seconds, or its log)."}
_STRING = {"type": "string", "maxLength": MAX_STRING_LENGTH}
_KEY = {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH, "pattern": "^[^_]",
        "description": f"Feature names: 1 to {MAX_KEY_LENGTH} characters, not starting with '_' (VW reserves those)."}


_VALUE_TEXT = ("A feature is a string (categorical), number, boolean, null, an array of only strings, only numbers or "
               f"only objects, or a nested object (a namespace, at most {MAX_DEPTH} levels deep).")


def _object_keywords(level: int) -> dict[str, Any]:
    """What a feature object at nesting ``level`` (the objects of a feature list: 1) must be."""
    names = dict(_KEY)
    if level == 1:
        names["not"] = {"const": ACTION_ID_NAMESPACE}
        names["description"] = f"{_KEY['description']} {ACTION_ID_NAMESPACE} is reserved by the service."
    return {"propertyNames": names, "additionalProperties": _ref(f"FeatureValue{level}")}


def _feature_values() -> dict[str, Any]:
    """``FeatureValue{k}``: a value inside a level-k feature object. JSON Schema cannot count depth, so there is
    one schema per level; objects nest to level ``MAX_DEPTH + 1`` (features.MAX_DEPTH below the list's objects).
    No anyOf over types, so an error points at the offending value (``...p[1]``), not at its list."""
    out: dict[str, Any] = {}
    for level in range(1, MAX_DEPTH + 2):
        nested = level <= MAX_DEPTH
        element_types = ["string", "number", "object"] if nested else ["string", "number"]
        element: dict[str, Any] = {"type": element_types, "maxLength": MAX_STRING_LENGTH, "pattern": "^[^_]",
                                   "minimum": -MAX_MAGNITUDE, "maximum": MAX_MAGNITUDE,
                                   "description": "Strings in an array become feature names: not empty, not "
                                                  "starting with '_' (VW reserves those)."}
        value: dict[str, Any] = {
            "type": ["string", "number", "boolean", "null", "array"] + (["object"] if nested else []),
            "maxLength": MAX_STRING_LENGTH, "minimum": -MAX_MAGNITUDE, "maximum": MAX_MAGNITUDE,
            "items": element,
            "if": {"type": "array"},
            "then": {"anyOf": [{"items": {"type": kind}} for kind in element_types],
                     "description": "An array feature holds only strings, only numbers or only objects."},
            "x-error-code": "InvalidFeatures",
            "description": f"{_VALUE_TEXT} {_NUMBER['description']}",
        }
        if nested:
            value.update(_object_keywords(level + 1))
            element.update(_object_keywords(level + 1))
        out[f"FeatureValue{level}"] = value
    return out


_FEATURE_LIST = {
    "type": ["array", "object", "null"], "items": {"type": "object", **_object_keywords(1)}, **_object_keywords(1),
    "x-error-code": "InvalidFeatures",
    "description": 'An array of feature objects, e.g. [{"user": {"age": 30}}, {"hour": 8}] (one object is taken as '
                   "an array of one). The objects are merged: a feature given twice with different values is a 400. "
                   'In contextFeatures, a top-level "timeZone" is the visitor\'s IANA time zone (e.g. "Europe/Rome"), '
                   "which the server's time-of-day features use: another value is a 400.",
}
_NAME_STRING = {**_STRING, "pattern": "^[^_]"}  # becomes a feature name in Rank
_FLAT_VALUE = {"anyOf": [_STRING, {"type": "boolean"}, _NUMBER, {"type": "array", "items": _NAME_STRING},
                         {"type": "array", "items": _NUMBER}],
               "description": "Item features are flat: a string, number, boolean, or a list of strings (not empty, not "
                              "starting with '_') or of numbers."}
_TIME = {"anyOf": [{"type": "number", "minimum": MIN_TIME, "maximum": MAX_TIME}, {"type": "string", "format": "date-time"},
                   {"type": "null"}],
         "description": "UNIX seconds or an ISO 8601 time (UTC unless it says otherwise), from 0001-01-01T00:00:00Z to "
                        "9999-12-31T23:59:59Z."}


#: Most sessionItems in one Rank: an anonymous visitor's recent items, not their whole history.
MAX_SESSION_ITEMS = 100


#: Rank's and multi-slot Rank's eventId and deferActivation.
_DECISION_ID = {
    "type": ["string", "null"], "minLength": 1, "maxLength": MAX_ID_LENGTH, "pattern": f"^[^{ID_FORBIDDEN}]*$",
    "not": {"type": "string", "pattern": "(^|/)\\.\\.?(/|$)"},
    "description": f"A unique id for this decision (generated when absent): 1 to {MAX_ID_LENGTH} characters, no control "
                   "characters, no '.' or '..' path segment (HTTP clients rewrite those in the reward URL).",
}
_DEFER_ACTIVATION = {"type": ["boolean", "null"], "description": "true: learn from the event only after it is activated."}


def _item_filter() -> dict[str, Any]:
    """``ItemFilter``: what personalize/filters.py accepts (it validates Rank's filter, naming the exact field;
    tests/test_filters.py holds the two equal)."""
    scalar = {"type": ["string", "number", "boolean", "null"], "maxLength": MAX_STRING_LENGTH}
    values = {"type": "array", "maxItems": MAX_FILTER_VALUES, "items": scalar}
    ordered = {"type": ["number", "string"], "maxLength": MAX_STRING_LENGTH,
               "description": "Numbers compare with numbers, strings with strings (by code point)."}
    operators = {"type": "object", "minProperties": 1, "additionalProperties": False,
                 "properties": {**{op: scalar for op in ("$eq", "$ne")}, **{op: values for op in ("$in", "$nin")},
                                **{op: ordered for op in RANGES}},
                 "description": f"Operators ({', '.join(EQUALITY + RANGES)}), combined by AND."}
    return {
        "type": ["object", "null"], "maxProperties": MAX_FILTER_FIELDS,
        "propertyNames": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH, "pattern": "^[^_$]",
                          "description": "A catalog feature name (no $and/$or: fields are combined by AND)."},
        "additionalProperties": {"anyOf": [{**scalar, "description": "A bare value means $eq."}, operators]},
        "x-error-code": "InvalidFilter",
        "description": 'Only catalog items whose features satisfy every condition, e.g. {"genres": {"$in": ["Comedy"]}, '
                       '"year": {"$gte": 1990}}. A list feature matches $eq/$in when any element matches and $ne/$nin '
                       "when none does; values compare within their type; null means the feature is absent. "
                       "See docs/api.md.",
    }
_EMBEDDING = {
    "type": ["array", "null"], "maxItems": MAX_EMBEDDING_DIMENSION,
    "items": {"type": "number", "minimum": -MAX_MAGNITUDE, "maximum": MAX_MAGNITUDE,
              "description": f"A vector's components are finite numbers within +-{MAX_MAGNITUDE:g} (vectors are "
                             "compared by angle, so any scale works)."},
    "if": {"type": "array", "minItems": 1},
    "then": {"contains": {"anyOf": [{"minimum": MIN_EMBEDDING_COMPONENT}, {"maximum": -MIN_EMBEDDING_COMPONENT}]},
             "description": f"A vector is not all zeros: one component at least is {MIN_EMBEDDING_COMPONENT:g} or more "
                            "in magnitude (send [] to remove an item's vector)."},
    "description": f"The item's vector from any embedding model: up to {MAX_EMBEDDING_DIMENSION} finite numbers, not all "
                   "zero; every item of a catalog has the same dimension (the stored vectors', else the first one sent): "
                   "another one is a 422 DimensionMismatch naming expected and got. Absent or null keeps the stored vector; [] removes it. The `embedding` generator proposes the items nearest to a user's "
                   "recent items (cosine similarity).",
}


def _lookalike_pattern() -> str:
    """Keys that look like a misspelled item field (compared without case, '_' or '-')."""
    words = ["[-_]*".join(re.escape(c) for c in word) for word in ITEM_LOOKALIKES]
    return "^(?i:[-_]*(" + "|".join(words) + ")[-_]*)$"


def _item_row(id_required: bool) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"id": _catalog_id("The item's id", slash=False),
                       "features": {"type": ["object", "null"], "propertyNames": _KEY, "additionalProperties": _FLAT_VALUE,
                                    "description": "The item's features (flat)."},
                       "createdAt": _TIME, "active": {"type": ["boolean", "null"]},
                       "embedding": _EMBEDDING},
        "required": ["id"] if id_required else [],
        "propertyNames": {"anyOf": [{"enum": list(ITEM_FIELDS)}, {**_KEY, "not": {"pattern": _lookalike_pattern()}}],
                          "description": f"Item fields are {', '.join(ITEM_FIELDS)}; other keys are features (not a "
                                         "misspelled field such as created_at, nor updatedAt, which the service sets)."},
        "additionalProperties": {"anyOf": [_FLAT_VALUE, {"type": "null"}]},
        "description": "A catalog item. Keys besides id, features, createdAt and active are features too; a key may "
                       "not be both a row key and a key of features.",
    }


def components(settings: Settings) -> dict[str, Any]:
    """Every schema of the API; limits that are settings (max_actions, the reward range) come from ``settings``."""
    action_id = _id("The action's id, unique within the request")
    schemas: dict[str, Any] = {
        **_feature_values(),
        "FeatureList": _FEATURE_LIST,
        "RankableAction": {
            "type": "object", "required": ["id"], "additionalProperties": False,
            "properties": {"id": action_id, "features": _ref("FeatureList")},
            "description": "A candidate: its id and features.",
        },
        "RankRequest": {
            "type": "object", "additionalProperties": False,
            "properties": {
                "contextFeatures": _ref("FeatureList"),
                "actions": {"type": "array", "minItems": 1, "items": _ref("RankableAction"),
                            "allOf": [{"maxItems": settings.max_actions, "x-error-code": "TooManyActions",
                                       "description": f"At most {settings.max_actions} actions (send fewer, or raise "
                                                      "PERSONALIZE_MAX_ACTIONS)."}],
                            "description": "The candidates; ids unique within the request."},
                "excludedActions": {"type": ["array", "null"], "items": _id("The id of an action to exclude"),
                                    "description": "Ids of actions in this request that must not be chosen now; at "
                                                   "least one action must remain."},
                "eventId": _DECISION_ID,
                "deferActivation": _DEFER_ACTIVATION,
                "userId": _catalog_id("The user this decision is for, as in the catalog's interactions; without "
                                      "actions, candidates are generated for them"),
                "numCandidates": {"type": "integer", "minimum": 1, "maximum": settings.max_actions,
                                  "description": f"How many candidates to generate (1 to {settings.max_actions})."},
                "generators": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1},
                               "description": 'The generators to ask, e.g. ["item_knn", "popular"].'},
                "filter": _ref("ItemFilter"),
                "includeItemFeatures": {"type": ["boolean", "null"],
                                        "description": "true: each ranking entry carries the item's catalog features."},
                "sessionItems": {"type": "array", "minItems": 1, "maxItems": MAX_SESSION_ITEMS,
                                 "items": _catalog_id("A catalog item's id", slash=False),
                                 "description": "An (anonymous) visitor's recent items, newest last: candidates come from "
                                                "item-to-item generators and never include these items. Every id must be "
                                                "a catalog item. With userId, they add to the user's history."},
            },
            "if": {"not": {"anyOf": [{"required": ["userId"]}, {"required": ["sessionItems"]}]}},
            "then": {"required": ["actions"]},
            "dependentSchemas": {"actions": {"properties": {
                key: {"not": {}, "description": f"{key} applies to Rank by userId or sessionItems without actions "
                                                f"(generated candidates); send actions or {key}, not both."}
                for key in ("numCandidates", "generators", "filter", "includeItemFeatures", "sessionItems")}}},
            "description": "Send actions (a non-empty array of {id, features}), or a userId and/or sessionItems and no "
                           "actions to have candidates generated from the catalog.",
        },
        "ItemFilter": _item_filter(),
        "RankedAction": {
            "type": "object", "required": ["id", "probability"],
            "properties": {"id": {"type": "string"}, "probability": {"type": "number", "minimum": 0, "maximum": 1},
                           "generators": {"type": "array", "items": _ref("Provenance"),
                                          "description": "For generated candidates: the generators that proposed it."},
                           "features": {"type": "object",
                                        "description": "With includeItemFeatures: the item's catalog features (as the "
                                                       "bandit saw them)."}},
        },
        "Provenance": {
            "type": "object", "required": ["name"],
            "properties": {"name": {"type": "string"}, "score": {"type": "number"}, "rank": {"type": "integer"},
                           "via": {"type": "string", "description": "The generator that blended this one's proposal."}},
        },
        "RankResponse": {
            "type": "object", "required": ["eventId", "rewardActionId", "ranking"],
            "properties": {"eventId": {"type": "string"}, "rewardActionId": {"type": "string"},
                           "ranking": {"type": "array", "items": _ref("RankedAction")}},
        },
        "RewardRequest": {
            "type": "object", "required": ["value"], "additionalProperties": False,
            "properties": {"value": {"type": "number", "minimum": settings.reward_min, "maximum": settings.reward_max,
                                     "x-error-code": "InvalidRewardValue",
                                     "description": f"A number within [{settings.reward_min}, {settings.reward_max}]; "
                                                    "scale your reward (or change PERSONALIZE_REWARD_MIN/MAX)."}},
            "description": 'The reward, e.g. {"value": 1.0}.',
        },
        "SlotRequest": {
            "type": "object", "required": ["id", "baselineAction"], "additionalProperties": False,
            "properties": {
                "id": _id("The slot's id, unique within the request"),
                "features": _ref("FeatureList"),
                "excludedActions": {"type": ["array", "null"], "items": _id("The id of an action this slot must not show"),
                                    "description": "Ids of actions in this request this slot must not show."},
                "baselineAction": _id("The action this slot would show without personalization: one of the actions, "
                                      "not in this slot's excludedActions, and a different one for every slot"),
            },
            "description": "A slot to fill: its id, features, excluded actions and baseline action.",
        },
        "MultiSlotRankRequest": {
            "type": "object", "required": ["actions", "slots"], "additionalProperties": False,
            "properties": {
                "contextFeatures": _ref("FeatureList"),
                "actions": {"type": "array", "minItems": 1, "items": _ref("RankableAction"),
                            "allOf": [{"maxItems": settings.max_actions, "x-error-code": "TooManyActions",
                                       "description": f"At most {settings.max_actions} actions (send fewer, or raise "
                                                      "PERSONALIZE_MAX_ACTIONS)."}],
                            "description": "The candidates; ids unique within the request."},
                "slots": {"type": "array", "minItems": 1, "items": _ref("SlotRequest"),
                          "description": "The slots to fill, in the order they are filled (the most important first); "
                                         "ids unique, at most as many slots as actions."},
                "eventId": _DECISION_ID,
                "deferActivation": _DEFER_ACTIVATION,
            },
            "description": "A multi-slot Rank: context, actions and the slots to fill with distinct actions.",
        },
        "SlotResponse": {
            "type": "object", "required": ["id"],
            "properties": {"id": {"type": "string"},
                           "rewardActionId": {"type": "string", "description": "The action to show in this slot; absent "
                                              "when every action the slot allows was taken by an earlier slot."}},
        },
        "MultiSlotRankResponse": {
            "type": "object", "required": ["eventId", "slots"],
            "properties": {"eventId": {"type": "string"}, "slots": {"type": "array", "items": _ref("SlotResponse")}},
        },
        "SlotReward": {
            "type": "object", "required": ["slotId", "value"], "additionalProperties": False,
            "properties": {
                "slotId": {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH,
                           "description": "The id of a slot of the event (as sent to Rank)."},
                "value": {"type": "number", "minimum": settings.reward_min, "maximum": settings.reward_max,
                          "x-error-code": "InvalidRewardValue",
                          "description": f"A number within [{settings.reward_min}, {settings.reward_max}]; "
                                         "scale your reward (or change PERSONALIZE_REWARD_MIN/MAX)."},
            },
        },
        "MultiSlotRewardRequest": {
            "type": "object", "required": ["reward"], "additionalProperties": False,
            "properties": {"reward": {"type": "array", "minItems": 1, "items": _ref("SlotReward"),
                                      "description": "One or more slots' rewards."}},
            "description": 'Rewards of some or all slots, e.g. {"reward": [{"slotId": "hero", "value": 1.0}]}.',
        },
        "PersonalizerError": {
            "type": "object", "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                           "target": {"type": "string", "description": "The offending field, as a JSON path."}},
        },
        "ErrorResponse": {"type": "object", "required": ["error"], "properties": {"error": _ref("PersonalizerError")}},
        "Status": {"type": "object", "required": ["model", "events", "rewards", "learner", "store", "settings"],
                   "description": "Model, event, reward and learner counts, the store's size, and the settings in force "
                                  "(docs/api.md).",
                   "properties": {"store": {"type": "object", "required": ["rows", "bytes", "oldestEventAt"], "properties": {
                       "rows": {"type": "object", "additionalProperties": {"type": "integer"}},
                       "bytes": {"type": ["integer", "null"]}, "oldestEventAt": {"type": ["number", "null"]}}}}},
        "Health": {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}},
        "OpenApiDocument": {"type": "object", "required": ["openapi", "paths"]},
        "MetricsText": {"type": "string", "description": "Prometheus text exposition format (docs/operate.md)."},
        "DashboardPage": {"type": "string", "description": "An HTML page with inline SVG charts; no script, nothing fetched."},
        "Dashboard": {
            "type": "object", "required": ["generatedAt", "learning", "window", "reward", "exploration", "topActions",
                                           "generators", "errors"],
            "description": "What GET /dashboard shows (docs/operate.md).",
        },
        "ItemRow": _item_row(id_required=True),
        "ItemBody": _item_row(id_required=False),
        "Item": {
            "type": "object", "required": ["id", "features", "createdAt", "updatedAt", "active"],
            "properties": {"id": {"type": "string"}, "features": {"type": "object"},
                           "createdAt": {"type": "string", "format": "date-time"},
                           "updatedAt": {"type": "string", "format": "date-time"}, "active": {"type": "boolean"},
                           "embedding": {"type": "array", "items": {"type": "number"},
                                         "description": "The item's vector, when it has one."}},
        },
        "ItemsRequest": {
            "type": "object", "required": ["items"], "additionalProperties": False,
            "properties": {"items": {"type": "array", "minItems": 1, "maxItems": MAX_BULK_ROWS, "items": _ref("ItemRow"),
                                     "x-error-code": "InvalidRows",
                                     "description": f"1 to {MAX_BULK_ROWS} items, each id once; larger loads belong in "
                                                    "`personalize import items`."}},
        },
        "ItemsResponse": {"type": "object", "required": ["inserted", "updated"],
                          "properties": {"inserted": {"type": "integer"}, "updated": {"type": "integer"}}},
        "Interaction": {
            "type": "object", "required": ["userId", "itemId"], "additionalProperties": False,
            "properties": {
                "userId": _catalog_id("The user who interacted, as sent to Rank"),
                "itemId": _catalog_id("The catalog item's id"),
                "type": {"type": ["string", "null"], "maxLength": MAX_TYPE_LENGTH, "pattern": f"^[^{ID_FORBIDDEN}]*$",
                         "description": f"e.g. view (the default), click, rating, purchase: at most {MAX_TYPE_LENGTH} "
                                        "characters, no control characters."},
                "value": {"type": ["number", "null"], "minimum": -MAX_INTERACTION_VALUE, "maximum": MAX_INTERACTION_VALUE,
                          "description": f"Default 1; |value| <= {MAX_INTERACTION_VALUE:.0f} (summed and squared in "
                                         "the generators' float32 maths)."},
                "timestamp": _TIME,
                "eventId": {**_catalog_id("The Rank event it came from"), "type": ["string", "null"]},
            },
        },
        "InteractionsRequest": {
            "type": "object", "required": ["interactions"], "additionalProperties": False,
            "properties": {"interactions": {"type": "array", "minItems": 1, "maxItems": MAX_BULK_ROWS,
                                            "items": _ref("Interaction"), "x-error-code": "InvalidRows",
                                            "description": f"1 to {MAX_BULK_ROWS} interactions; larger loads belong "
                                                           "in `personalize import interactions`."}},
        },
        "InteractionsResponse": {"type": "object", "required": ["inserted"], "properties": {"inserted": {"type": "integer"}}},
        "TrainRequest": {
            "type": "object", "additionalProperties": False,
            "properties": {"generators": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1},
                                          "description": 'The generators to fit, e.g. ["als"]; all when absent.'}},
        },
        "ServiceConfiguration": service_config.schema(settings),
        "ModelFile": {"type": "string", "format": "binary",
                      "description": "A model: the raw VW model (signed=false), or a zip archive of model.vw, "
                                     "metadata.json and an HMAC-SHA256 signature (signed=true). See docs/api.md."},
        "ModelProperties": {"type": "object", "properties": {
            "creationTime": {"type": "string", "format": "date-time",
                             "description": "When this model began: its first snapshot, a reset or an import."},
            "lastModifiedTime": {"type": "string", "format": "date-time", "description": "Its newest snapshot."}}},
        "LogsProperties": {"type": "object", "required": ["dateRange"], "properties": {"dateRange": {
            "type": "object", "properties": {"from": {"type": "string", "format": "date-time"},
                                             "to": {"type": "string", "format": "date-time"}},
            "description": "When the oldest and the newest stored event were ranked; empty without events."}}},
        "TrainResponse": {
            "type": "object", "required": ["items", "users", "interactions", "trained"],
            "properties": {"items": {"type": "integer"}, "users": {"type": "integer"}, "interactions": {"type": "integer"},
                           "trained": {"type": "object", "additionalProperties": {
                               "type": "object", "required": ["seconds"], "properties": {"seconds": {"type": "number"}}}}},
        },
        "UserData": {
            "type": "object", "required": ["userId", "events", "interactions"],
            "description": "Everything stored under a userId: the events of its Rank calls (actions, ranking, the "
                           "example VW saw, rewards, whether learned) and its interactions (docs/api.md, 'Users').",
            "properties": {"userId": {"type": "string"}, "events": {"type": "array", "items": {"type": "object"}},
                           "interactions": {"type": "array", "items": {"type": "object"}}},
        },
        "UserDeleted": {
            "type": "object", "required": ["userId", "deleted"],
            "properties": {"userId": {"type": "string"}, "deleted": {
                "type": "object", "required": ["events", "rewards", "eventExamples", "interactions"],
                "description": "Rows erased, per kind.",
                "properties": {k: {"type": "integer"} for k in ("events", "rewards", "eventExamples", "interactions")}}},
        },
        **_job_schemas(),
    }
    return schemas


_NAME = {"type": "string", "minLength": 1, "maxLength": 256, "pattern": f"^[^{ID_FORBIDDEN}]*$",
         "description": "A name: 1 to 256 characters, no control characters."}
_JOB_TIME = {"anyOf": [{"type": "number", "minimum": MIN_TIME, "maximum": MAX_TIME}, {"type": "string", "format": "date-time"}],
             "description": "An ISO 8601 time (or UNIX seconds); events ranked from startTime (included) to endTime "
                            "(excluded) are used."}
_POLICY = {
    "type": "object", "required": ["name", "arguments"], "additionalProperties": False,
    "properties": {
        "name": _NAME,
        "arguments": {"type": "string", "minLength": 1, "maxLength": 2048,
                      "description": "VW arguments, e.g. '--cb_explore_adf --squarecb --cb_type mtr -q ca -l 2' "
                                     "(--cb_explore_adf is added when missing; --dsjson is ignored; options that "
                                     "touch files, such as -f or --data, are refused)."},
    },
    "description": "Learning settings: a name and VW arguments; checked with VW before they are accepted.",
}
_JOB_STATUS = {"type": "string", "enum": ["NotSubmitted", "Running", "Succeeded", "Failed", "OptimalPolicyApplied",
                                          "OnlinePolicyRetained"]}


def _job_schemas() -> dict[str, Any]:
    job_common = {"id": {"type": "string"}, "name": {"type": "string"}, "startTime": {"type": "string", "format": "date-time"},
                  "endTime": {"type": "string", "format": "date-time"}, "creationTime": {"type": "string", "format": "date-time"},
                  "status": _JOB_STATUS, "description": {"type": "string"},
                  "progress": {"type": "number", "minimum": 0, "maximum": 1, "description": "Share of the work done."}}
    required = ["id", "name", "startTime", "endTime", "creationTime", "status"]
    return {
        "PolicyContract": _POLICY,
        "PolicyReferenceContract": {
            "type": "object", "required": ["evaluationId", "policyName"], "additionalProperties": False,
            "properties": {"evaluationId": _JOB_ID,
                           "policyName": {"type": "string", "minLength": 1, "maxLength": 256,
                                          "description": "The name of a policy in the evaluation's results, e.g. its "
                                                         "optimalPolicy."}},
            "description": "Which policy of which evaluation to apply.",
        },
        "EvaluationContract": {
            "type": "object", "required": ["name", "startTime", "endTime"], "additionalProperties": False,
            "properties": {
                "name": _NAME, "startTime": _JOB_TIME, "endTime": _JOB_TIME,
                "enablePolicyOptimization": {"type": ["boolean", "null"],
                                             "description": "Also search learning settings on the logs (optimalPolicy)."},
                "policies": {"type": ["array", "null"], "maxItems": 10, "items": _POLICY,
                             "description": "Up to 10 learning settings to evaluate beside the online policy."},
            },
            "description": "An offline evaluation job.",
        },
        "FeatureImportanceContract": {
            "type": "object", "required": ["name", "startTime", "endTime"], "additionalProperties": False,
            "properties": {"name": _NAME, "startTime": _JOB_TIME, "endTime": _JOB_TIME},
            "description": "A feature importance job.",
        },
        "Evaluation": {"type": "object", "required": required, "properties": {
            **job_common, "evaluationType": {"type": "string", "enum": ["Manual", "Auto"]},
            "optimalPolicy": {"type": "string"}, "content": {"type": "object"}, "optimization": {"type": ["object", "null"]}}},
        "EvaluationsList": {"type": "object", "required": ["value"],
                            "properties": {"value": {"type": "array", "items": _ref("Evaluation")}}},
        "FeatureImportance": {"type": "object", "required": required, "properties": {
            **job_common, "featureScores": {"type": "array", "items": {
                "type": "object", "required": ["namespace", "featureName", "score"],
                "properties": {"namespace": {"type": "string"}, "featureName": {"type": "string"},
                               "score": {"type": "number"}}}}}},
        "FeatureImportancesList": {"type": "object", "required": ["value"],
                                   "properties": {"value": {"type": "array", "items": _ref("FeatureImportance")}}},
    }


# -- operations ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Operation:
    """One HTTP operation: what it takes, what it answers, and who may call it (``role``:
    ``client`` = Rank/Reward/Activate/status keys, ``admin`` = admin keys only, ``open`` = no key).

    The one place an operation's role is decided: the key check (personalize/api/auth.py) and the
    document both read it from here."""

    method: str
    path: str  # OpenAPI style, under each prefix
    operation_id: str
    summary: str
    role: str
    tag: str
    endpoint: str  # the Flask view (blueprint.function) serving it: personalize.api.auth reads roles by this name
    responses: dict[int, str | None]  # status -> response schema name (None: no content)
    request: str | None = None
    request_required: bool = True
    path_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: tuple[int, ...] = ()  # beyond the ones every operation of its kind has
    links: dict[str, str] = field(default_factory=dict)  # link name -> operationId taking eventId
    prefixes: tuple[str, ...] = PREFIXES
    query_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    media: str = "application/json"  # of the request body and the 2xx body (BINARY: model files)


#: The media type of model files (PUT /model takes it, GET /model answers it).
BINARY = "application/octet-stream"


_EVENT_ID = {"type": "string", "minLength": 1, "description": "The eventId returned by Rank (percent-encode '/')."}
_ITEM_ID_PATH = {"type": "string", "minLength": 1, "description": "The item's id."}
_JOB_ID = {"type": "string", "minLength": 1, "maxLength": 256, "pattern": "^[A-Za-z0-9._~-]+$", "not": {"enum": [".", ".."]},
           "description": "The job's id (chosen by the client, e.g. a GUID): letters, digits, '-', '_', '.', '~'."}

OPERATIONS: tuple[Operation, ...] = (
    Operation("post", "/rank", "Events_Rank", "Rank actions: choose one for this context.", "client", "Ranking", "rank.rank",
              {201: "RankResponse"}, request="RankRequest", errors=(409, 422),
              links={"Reward": "Events_Reward", "Activate": "Events_Activate"}),
    Operation("post", "/events/{eventId}/reward", "Events_Reward", "Report the reward of a ranked event.", "client",
              "Events", "events.reward", {204: None}, request="RewardRequest", path_params={"eventId": _EVENT_ID}, errors=(404, 409)),
    Operation("post", "/events/{eventId}/activate", "Events_Activate",
              "Activate a deferred event: its reward wait starts now.", "client", "Events", "events.activate", {204: None},
              path_params={"eventId": _EVENT_ID}, errors=(404, 409)),
    Operation("post", "/multislot/rank", "MultiSlot_Rank", "Rank actions for several slots: a distinct one per slot.",
              "client", "MultiSlot", "multislot.rank", {201: "MultiSlotRankResponse"}, request="MultiSlotRankRequest",
              errors=(409,)),
    Operation("post", "/multislot/events/{eventId}/reward", "MultiSlotEvents_Reward",
              "Report rewards of a multi-slot event's slots.", "client", "MultiSlot", "multislot.reward", {204: None},
              request="MultiSlotRewardRequest", path_params={"eventId": _EVENT_ID}, errors=(404, 409)),
    Operation("post", "/multislot/events/{eventId}/activate", "MultiSlotEvents_Activate",
              "Activate a deferred multi-slot event: its reward wait starts now.", "client", "MultiSlot",
              "multislot.activate", {204: None}, path_params={"eventId": _EVENT_ID}, errors=(404, 409)),
    Operation("get", "/status", "Status_Get", "Model, event, reward and learner counts (our extension).", "client",
              "Status", "status.status", {200: "Status"}),
    Operation("get", "/health", "Health_Get", "Liveness probe: 503 while the database is unreachable.", "open",
              "Status", "status.health", {200: "Health"}),
    Operation("put", "/catalog/items/{itemId}", "Items_Put", "Create (201) or replace (200) one catalog item.", "admin",
              "Catalog", "catalog.put_item", {200: "Item", 201: "Item"}, request="ItemBody", errors=(422,),
              path_params={"itemId": _catalog_id("The item's id", slash=False)}),
    Operation("get", "/catalog/items/{itemId}", "Items_Get", "One catalog item.", "admin", "Catalog", "catalog.read_item", {200: "Item"},
              path_params={"itemId": _ITEM_ID_PATH}, errors=(404,)),
    Operation("delete", "/catalog/items/{itemId}", "Items_Delete",
              "Deactivate an item (never proposed again; history keeps pointing at it).", "admin", "Catalog", "catalog.delete_item", {204: None},
              path_params={"itemId": _ITEM_ID_PATH}, errors=(404,)),
    Operation("post", "/catalog/items", "Items_Upsert", "Create or replace items in bulk (all or nothing).", "admin",
              "Catalog", "catalog.post_items", {200: "ItemsResponse"}, request="ItemsRequest", errors=(422,)),
    Operation("post", "/interactions", "Interactions_Add", "Add interactions in bulk (all or nothing).", "admin",
              "Catalog", "catalog.post_interactions", {201: "InteractionsResponse"}, request="InteractionsRequest"),
    Operation("post", "/generators/train", "Generators_Train", "Fit the candidate generators on the store now.", "admin",
              "Catalog", "catalog.train_generators", {200: "TrainResponse"}, request="TrainRequest", request_required=False, errors=(422,)),
    Operation("get", "/users/{userId}", "Users_Export",
              "Everything stored about a user: events with their rewards, and interactions.", "admin", "Users",
              "users.export", {200: "UserData"}, path_params={"userId": _catalog_id("The user's id, as sent to Rank")},
              errors=(404,)),
    Operation("delete", "/users/{userId}", "Users_Delete",
              "Erase everything stored about a user, in one transaction; the answer counts what was deleted.", "admin",
              "Users", "users.erase", {200: "UserDeleted"}, path_params={"userId": _catalog_id("The user's id, as sent to Rank")},
              errors=(404,)),
    Operation("get", "/configurations/service", "ServiceConfiguration_Get",
              "The service configuration in force (and Apprentice metrics).", "admin", "Configuration",
              "configuration.get_service", {200: "ServiceConfiguration"}),
    Operation("put", "/configurations/service", "ServiceConfiguration_Update",
              "Change the service configuration; every process applies it within config_poll_interval.", "admin",
              "Configuration", "configuration.put_service", {200: "ServiceConfiguration"}, request="ServiceConfiguration"),
    Operation("get", "/model", "Model_Get", "Export the model (signed=true: a signed zip archive).", "admin", "Model",
              "model.export_model", {200: "ModelFile"}, media=BINARY,
              query_params={"signed": {"type": "boolean", "default": False,
                                       "description": "true: a zip archive signed with the server's model_signing_key."}}),
    Operation("put", "/model", "Model_Import", "Import a model exported by GET /model; it is served and learned from at once.",
              "admin", "Model", "model.import_model", {204: None}, request="ModelFile", media=BINARY),
    Operation("delete", "/model", "Model_Reset", "Start over from an untrained model (the logs stay).", "admin", "Model",
              "model.reset_model", {204: None}),
    Operation("get", "/model/properties", "Model_GetProperties", "When the model began and was last changed.", "admin",
              "Model", "model.properties", {200: "ModelProperties"}),
    Operation("get", "/logs/properties", "Log_GetProperties", "The date range of the stored events.", "admin", "Logs",
              "logs.properties", {200: "LogsProperties"}),
    Operation("delete", "/logs", "Log_Delete", "Delete every stored event and reward (not the model).", "admin", "Logs",
              "logs.delete", {204: None}),
    Operation("get", "/metrics", "Metrics_Get", "Prometheus metrics of this host's server workers and learner "
              "(text format; docs/operate.md).", "admin", "Operations", "metrics.metrics", {200: "MetricsText"},
              prefixes=("",), media="text/plain"),
    Operation("get", "/dashboard", "Dashboard_Get", "An HTML page: is it learning, reward against a baseline, "
              "exploration, top actions, generator mix, recent errors.", "admin", "Operations", "dashboard.page",
              {200: "DashboardPage"}, prefixes=("",), media="text/html"),
    Operation("get", "/dashboard/data", "Dashboard_Data", "What the dashboard shows, as JSON.", "admin", "Operations",
              "dashboard.data", {200: "Dashboard"}, prefixes=("",)),
    Operation("get", "/configurations/policy", "Policy_Get", "The learning settings in force.", "admin", "Policy",
              "policy.get_policy", {200: "PolicyContract"}),
    Operation("put", "/configurations/policy", "Policy_Update",
              "Replace the learning settings (checked with VW first); the model is rebuilt from the logged events.",
              "admin", "Policy", "policy.put_policy", {200: "PolicyContract"}, request="PolicyContract", errors=(422,)),
    Operation("delete", "/configurations/policy", "Policy_Reset", "Back to the configured default learning settings.",
              "admin", "Policy", "policy.delete_policy", {200: "PolicyContract"}),
    Operation("post", "/configurations/applyFromEvaluation", "ServiceConfiguration_ApplyFromEvaluation",
              "Make a policy of a finished evaluation the learning settings in force.", "admin", "Evaluations",
              "evaluations.apply_from_evaluation", {204: None}, request="PolicyReferenceContract", errors=(404, 409, 422)),
    Operation("put", "/evaluations/{evaluationId}", "Evaluations_Create", "Submit an offline evaluation (a background job).",
              "admin", "Evaluations", "evaluations.create_evaluation", {200: "Evaluation"}, request="EvaluationContract",
              path_params={"evaluationId": _JOB_ID}, errors=(409, 422)),
    Operation("post", "/evaluations/{evaluationId}", "Evaluations_Submit", "The same as PUT (submit an offline evaluation).",
              "admin", "Evaluations", "evaluations.create_evaluation", {200: "Evaluation"}, request="EvaluationContract",
              path_params={"evaluationId": _JOB_ID}, errors=(409, 422)),
    Operation("get", "/evaluations/{evaluationId}", "Evaluations_Get", "An offline evaluation, its status and results.",
              "admin", "Evaluations", "evaluations.read_evaluation", {200: "Evaluation"},
              path_params={"evaluationId": _JOB_ID}, errors=(404,)),
    Operation("get", "/evaluations", "Evaluations_List", "Every offline evaluation.", "admin", "Evaluations",
              "evaluations.list_evaluations", {200: "EvaluationsList"}),
    Operation("delete", "/evaluations/{evaluationId}", "Evaluations_Delete", "Delete an offline evaluation (stops it if running).",
              "admin", "Evaluations", "evaluations.remove_evaluation", {204: None}, path_params={"evaluationId": _JOB_ID},
              errors=(404,)),
    Operation("put", "/featureImportances/{featureImportanceId}", "FeatureImportances_Create",
              "Submit a feature importance job.", "admin", "Evaluations", "evaluations.create_feature_importance",
              {200: "FeatureImportance"}, request="FeatureImportanceContract",
              path_params={"featureImportanceId": _JOB_ID}, errors=(409, 422)),
    Operation("post", "/featureImportances/{featureImportanceId}", "FeatureImportances_Submit",
              "The same as PUT (submit a feature importance job).", "admin", "Evaluations",
              "evaluations.create_feature_importance", {200: "FeatureImportance"}, request="FeatureImportanceContract",
              path_params={"featureImportanceId": _JOB_ID}, errors=(409, 422)),
    Operation("get", "/featureImportances/{featureImportanceId}", "FeatureImportances_Get",
              "A feature importance job: status and features, most important first.", "admin", "Evaluations",
              "evaluations.read_feature_importance", {200: "FeatureImportance"},
              path_params={"featureImportanceId": _JOB_ID}, errors=(404,)),
    Operation("get", "/featureImportances", "FeatureImportances_List", "Every feature importance job.", "admin",
              "Evaluations", "evaluations.list_feature_importances", {200: "FeatureImportancesList"}),
    Operation("delete", "/featureImportances/{featureImportanceId}", "FeatureImportances_Delete",
              "Delete a feature importance job.", "admin", "Evaluations", "evaluations.remove_feature_importance",
              {204: None}, path_params={"featureImportanceId": _JOB_ID}, errors=(404,)),
    Operation("get", "/openapi.json", "OpenApi_Get", "This document.", "open", "Status", "openapi.document", {200: "OpenApiDocument"},
              prefixes=("", "/personalizer/v1.0")),
)

#: Views whose request body is a model file, not JSON (personalize/api/browsers.py lets BINARY through to them).
BINARY_BODY_ENDPOINTS = frozenset(op.endpoint for op in OPERATIONS if op.request is not None and op.media == BINARY)

_ERROR_TEXT = {
    400: "Bad input: the error names the field (target, a JSON path) and the fix.",
    401: "Missing or wrong key (Ocp-Apim-Subscription-Key or Authorization: Bearer).",
    403: "A client key on an admin operation.",
    404: "No such event, slot of the event, item, user, evaluation, feature importance or operation.",
    409: "Conflict: eventId or job id already used, reward too late, the event already learned, an event of the other "
         "kind (single-slot vs multi-slot), a reward for a slot answered without an action, or an evaluation not "
         "finished.",
    413: "The body is larger than max_body_bytes.",
    415: "A body without a JSON content type (application/json or +json); model files: application/octet-stream.",
    422: "Well-formed but not servable now: no generators enabled, an unknown generator, no candidates, an item "
         "vector whose dimension differs from the catalog's, learning settings VW refuses, or a time range that ends "
         "before it starts.",
    503: "The database is unreachable; retry after Retry-After seconds.",
}


def _error_statuses(op: Operation) -> list[int]:
    statuses = set(op.errors) | {503}
    if op.request is not None or op.path_params or op.query_params:
        statuses.add(400)
    if op.request is not None:
        statuses |= {413, 415}
    if op.role != "open":
        statuses.add(401)
    if op.role == "admin":
        statuses.add(403)
    if op.operation_id == "OpenApi_Get":
        statuses.discard(503)
    return sorted(statuses)


def _operation_object(op: Operation, prefix: str) -> dict[str, Any]:
    preview = prefix == PREVIEW_PREFIX
    parameters = [{"name": name, "in": "path", "required": True, "schema": schema}
                  for name, schema in op.path_params.items()]
    parameters += [{"name": name, "in": "query", "required": False, "schema": schema}
                   for name, schema in op.query_params.items()]
    if preview:
        parameters.append({"name": "api-version", "in": "query", "required": False,
                           "schema": {"type": "string", "example": "2022-09-01-preview"},
                           "description": "Sent by azure-ai-personalizer; any value is accepted."})
    suffix = "_Preview" if preview else ("_Root" if prefix == "" and op.operation_id == "OpenApi_Get" else "")
    responses: dict[str, Any] = {}
    for status, schema in sorted(op.responses.items()):
        response: dict[str, Any] = {"description": op.summary if status < 300 else ""}
        if schema is not None:
            response["content"] = {op.media if status < 300 else "application/json": {"schema": _ref(schema)}}
        if op.links and status == 201:
            response["links"] = {name: {"operationId": target + suffix, "parameters": {"eventId": "$response.body#/eventId"}}
                                 for name, target in op.links.items()}
        responses[str(status)] = response
    for status in _error_statuses(op):
        response = {"description": _ERROR_TEXT[status], "content": {"application/json": {"schema": _ref("ErrorResponse")}}}
        if status == 503:
            response["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}}
        responses[str(status)] = response
    out: dict[str, Any] = {
        "operationId": op.operation_id + suffix, "summary": op.summary, "tags": [op.tag],
        "x-role": op.role, "responses": responses,
        "security": [] if op.role == "open" else [{"apiKey": []}, {"bearer": []}],
    }
    if parameters:
        out["parameters"] = parameters
    if op.request is not None:
        out["requestBody"] = {"required": op.request_required,
                              "content": {op.media: {"schema": _ref(op.request)}}}
    return out


def openapi_document(settings: Settings) -> dict[str, Any]:
    """The OpenAPI 3.1 document of this server (its limits included)."""
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        for prefix in op.prefixes:
            paths.setdefault(prefix + op.path, {})[op.method] = _operation_object(op, prefix)
    return {
        "openapi": "3.1.0",
        "info": {"title": "personalize", "version": "1.0",
                 "description": "Self-hosted, Azure AI Personalizer-compatible personalization service. Every "
                                "operation exists under /personalizer/v1.0 and, for the 2022-09-01-preview SDK, "
                                "under /personalizer (?api-version=...). Roles: x-role client (client or admin "
                                "key), admin (admin key), open (no key)."},
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "paths": paths,
        "components": {
            "schemas": components(settings),
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "Ocp-Apim-Subscription-Key",
                           "description": "What both Microsoft SDKs send."},
                "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <key>."},
            },
        },
    }


# -- validation ----------------------------------------------------------------------------------
def _json_path(parts: Any) -> str:
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


class RequestSchemas:
    """The request schemas compiled once per settings; ``check`` turns the first violation into a 400."""

    def __init__(self, settings: Settings) -> None:
        self.schemas = components(settings)
        # Feature lists are checked by personalize/features.py, which turns them into VW namespaces in the
        # same pass (and also checks catalog candidates and the simulator's calls): checking them against
        # the schema too cost 0.5-0.8 ms per 50-action Rank, three times the whole parse. The FeatureList
        # schema documents exactly what features.py accepts; tests/test_openapi.py proves they agree.
        # Rank's filter likewise: personalize/filters.py validates it, naming the exact operator (filter.year.$foo).
        self._root = {"components": {"schemas": {**self.schemas, "FeatureList": True, "ItemFilter": True}}}
        self._validators = {
            name: jsonschema_rs.Draft202012Validator({**self._root, "$ref": _REF + name}, validate_formats=True)
            for name in ("RankRequest", "RewardRequest", "ItemBody", "ItemsRequest", "InteractionsRequest", "TrainRequest",
                         "ServiceConfiguration", "MultiSlotRankRequest", "MultiSlotRewardRequest",
                         "PolicyContract", "PolicyReferenceContract", "EvaluationContract", "FeatureImportanceContract")
        }

    def check(self, name: str, body: Any) -> None:
        """Raise the ApiError for the first way ``body`` breaks schema ``name`` (bulk calls: every bad row)."""
        validator = self._validators[name]
        try:
            if validator.is_valid(body):
                return
            errors = list(validator.iter_errors(body))
        except ValueError:  # jsonschema-rs' recursion limit: a value nested far deeper than any schema allows
            path = nesting_problem(body, MAX_NESTING + 2)  # + the body and a row around the catalog's levels
            raise ApiError(400, "BadRequest", f"{path or 'The body'} is nested deeper than {MAX_NESTING} levels of "
                           "arrays and objects; flatten it.", path) from None
        if name in ("ItemsRequest", "InteractionsRequest"):
            rows = [e for e in errors if len(e.instance_path) >= 2]
            if rows:
                raise self._rejected_rows(rows)
        raise self._error(errors[0])

    def _walk(self, error: jsonschema_rs.ValidationError) -> tuple[Any, str | None, str | None]:
        """(the schema object holding the failed keyword, the nearest description, the nearest x-error-code)."""
        node: Any = self._root
        description = code = None
        for part in error.schema_path[:-1]:
            node = node[part]
            if isinstance(node, dict):
                description = node.get("description", description)
                code = node.get("x-error-code", code)
        return node, description, code

    def _error(self, error: jsonschema_rs.ValidationError) -> ApiError:
        target = _json_path(error.instance_path)
        kind = error.kind
        parent, description, code = self._walk(error)
        if isinstance(kind, jsonschema_rs.ValidationErrorKind.AdditionalProperties):
            key = kind.unexpected[0]
            target = f"{target}.{key}" if target else str(key)
            accepted = ", ".join(parent.get("properties", {}))
            return ApiError(400, "UnknownField", f"{target} is not a field here; check the spelling (accepted: {accepted}).", target)
        if isinstance(kind, jsonschema_rs.ValidationErrorKind.Required):
            key = kind.property
            target = f"{target}.{key}" if target else str(key)
            return ApiError(400, code or "BadRequest", f"{target} is required. {description or ''}".strip(), target)
        if isinstance(kind, jsonschema_rs.ValidationErrorKind.PropertyNames):
            key = kind.error.instance
            target = f"{target}.{key}" if target else str(key)
            return ApiError(400, code or "BadRequest", f"{_short(target, 120)} is not an accepted name. {description or ''}".strip(), target)
        where = target or "The body"
        if isinstance(kind, jsonschema_rs.ValidationErrorKind.Not):
            problem = "is not allowed here"
        elif isinstance(kind, jsonschema_rs.ValidationErrorKind.Pattern):  # the regex helps no one; the description says the form
            problem = "is invalid: " + _short(orjson.dumps(error.instance).decode(), 80) + " is not in the accepted form"
        else:
            problem = error.message
            shown = orjson.dumps(error.instance).decode()
            problem = "is invalid: " + _short("it" + problem[len(shown):] if problem.startswith(shown) else problem)
        return ApiError(400, code or "BadRequest", f"{where} {problem}. {description or ''}".strip(), target or None)

    def _rejected_rows(self, errors: list[jsonschema_rs.ValidationError]) -> ApiError:
        first: dict[int, ApiError] = {}
        key = errors[0].instance_path[0]
        for error in errors:
            first.setdefault(error.instance_path[1], self._error(error))
        bad = sorted(first.items())
        details = "; ".join(e.message for _, e in bad[:10])
        more = f" (and {len(bad) - 10} more)" if len(bad) > 10 else ""
        return ApiError(400, "InvalidRows", f"{len(bad)} row(s) rejected, nothing stored: {details}{more}", f"{key}[{bad[0][0]}]")
