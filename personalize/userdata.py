"""A user's stored data: export it (right of access) and erase it (right to erasure).

What "a user's data" is: every row keyed by the user's id.

- **events** whose Rank request named this ``userId`` (``events.user_id``, indexed), with their
  **rewards** and **examples** (the context and actions VW saw, as the client sent them), waiting
  events included: erasure is explicit, so an event still in its reward wait goes too (a reward
  sent for it later is a 404);
- **interactions** with this ``userId`` (imported, posted, or recorded by Rewards of its events).

Rank calls that sent only context features (Personalizer's style) carry no user id: the service
cannot tell whose they are, and they are not part of any user's data. A client that must erase
them sends a ``userId`` with its Rank calls (actions may still be sent), or keeps its own map.

Not erased, because they are aggregates, not records: the bandit's model (what it learned from the
events stays learned, as in Personalizer), and stored candidate-generator models until their next
fit (``POST /generators/train`` or `personalize train` refits at once; see docs/api.md).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Iterable, Sequence

import orjson
from sqlalchemy import Connection, delete, select

from personalize.catalog import id_problem
from personalize.models import Event, EventExample, Interaction, Reward

__all__ = ["user_id_problem", "export_user", "delete_user"]

#: Event seqs per IN list (SQLite binds at most 32,766 parameters per statement).
_CHUNK = 1000


def user_id_problem(value: str) -> str | None:
    """What is wrong with ``value`` as a user id (Rank's and the interactions' rule), or None."""
    problem = id_problem(value)
    if problem is None and value != value.strip():
        problem = "has leading or trailing whitespace; ids are matched exactly, never trimmed"
    return problem


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def _chunks(values: Sequence[int]) -> Iterable[Sequence[int]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start:start + _CHUNK]


def export_user(connection: Connection, user_id: str) -> dict[str, Any] | None:
    """Everything stored under ``user_id`` as JSON-ready data; None when nothing is."""
    events = list(connection.execute(select(Event.__table__).where(Event.user_id == user_id).order_by(Event.seq)))
    interactions = list(connection.execute(
        select(Interaction.item_id, Interaction.type, Interaction.value, Interaction.timestamp, Interaction.event_id)
        .where(Interaction.user_id == user_id).order_by(Interaction.timestamp, Interaction.id)
    ))
    if not events and not interactions:
        return None
    seqs = [e.seq for e in events]
    rewards: dict[int, list[dict[str, Any]]] = {}
    examples: dict[int, Any] = {}
    for chunk in _chunks(seqs):
        for r in connection.execute(select(Reward.event_seq, Reward.value, Reward.received_at, Reward.counted)
                                    .where(Reward.event_seq.in_(chunk)).order_by(Reward.id)):
            rewards.setdefault(r.event_seq, []).append(
                {"value": r.value, "receivedAt": _iso(r.received_at), "counted": bool(r.counted)})
        for x in connection.execute(select(EventExample.seq, EventExample.example).where(EventExample.seq.in_(chunk))):
            examples[x.seq] = orjson.loads(x.example)
    return {
        "userId": user_id,
        "events": [{
            "eventId": e.event_id, "createdAt": _iso(e.created_at),
            "actions": e.action_ids, "excludedActions": e.excluded_ids,
            "ranking": [{"id": e.action_ids[i], "probability": p} for i, p in zip(e.ranking, e.probabilities)],
            "rewardActionId": e.action_ids[e.chosen_index], "probability": e.probability,
            "modelVersion": e.model_version, "deferActivation": bool(e.deferred), "activatedAt": _iso(e.activated_at),
            "candidates": (e.extra or {}).get("generators"),
            "example": examples.get(e.seq),
            "learned": None if e.learned_version is None else {"modelVersion": e.learned_version, "reward": e.learned_reward},
            "rewards": rewards.get(e.seq, []),
        } for e in events],
        "interactions": [{
            "itemId": i.item_id, "type": i.type, "value": i.value, "timestamp": _iso(i.timestamp), "eventId": i.event_id,
        } for i in interactions],
    }


def delete_user(connection: Connection, user_id: str) -> dict[str, int] | None:
    """Erase everything stored under ``user_id`` in the caller's transaction; the rows removed per kind,
    or None when nothing was stored.

    The user's events are locked first (PostgreSQL: FOR UPDATE; SQLite: the write lock), so a Reward
    racing the erasure either commits before it (and its reward and interaction are erased too) or
    finds no event (404). The learner holds no lock: an event it is learning was changed under it, so
    its snapshot is refused and it relearns without the event (personalize.store.publish_snapshot).
    """
    query = select(Event.seq).where(Event.user_id == user_id).order_by(Event.seq)
    if connection.dialect.name == "postgresql":
        query = query.with_for_update()
    seqs = list(connection.execute(query).scalars())
    counts = {"events": 0, "rewards": 0, "eventExamples": 0, "interactions": 0}
    for chunk in _chunks(seqs):
        counts["rewards"] += connection.execute(delete(Reward).where(Reward.event_seq.in_(chunk))).rowcount
        counts["eventExamples"] += connection.execute(delete(EventExample).where(EventExample.seq.in_(chunk))).rowcount
        counts["events"] += connection.execute(delete(Event).where(Event.seq.in_(chunk))).rowcount
    counts["interactions"] = connection.execute(delete(Interaction).where(Interaction.user_id == user_id)).rowcount
    if not any(counts.values()):
        return None
    return counts
