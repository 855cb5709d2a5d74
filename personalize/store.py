"""Data functions for events, rewards, the join and model snapshots.

Each function takes an open Session or Core Connection (``Database.transaction()``, the
hot paths' cheaper choice) and leaves commit/rollback to its caller, so one request or one
learner step is one transaction. Statements are built once, at import: constructing
SQLAlchemy statements per call costs more than SQLite needs to run them.

The join, in one paragraph: a Rank stores an event whose ``ready_at`` is the end of its
reward wait (NULL while a deferred event waits for activation). With ``earliest``
aggregation the first reward pulls ``ready_at`` forward to now. The learner reads ready
events without locking them, learns them, and then *claims* them (``claimed_version``)
and marks them learned in the same transaction that stores the model snapshot containing
them, so a crash keeps all or nothing. That transaction claims an event only if its
counted rewards are still the ones learned (``reward_count``); otherwise nothing is
published and the learner relearns from its last snapshot. From the claim on, a reward
can no longer change what is learned, so late rewards are refused (409) or, for
``earliest``, kept but not counted. (Each event row holds its kilobytes of ``example``;
rewriting it once per learned event instead of twice is half the learner's SQL cost.)
"""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass
from typing import Any, Iterator, NamedTuple

import orjson

from sqlalchemy import Connection, and_, bindparam, delete, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from personalize.api.errors import ApiError
from personalize.models import (
    Event, EventExample, GeneratorModel, Interaction, Item, LearnerLease, ModelSnapshot, MultiSlotSnapshot, Reward,
)

__all__ = [
    "insert_event", "add_reward", "add_slot_rewards", "activate_event", "ready_events", "publish_snapshot",
    "latest_snapshot", "latest_version", "release_claims", "acquire_lease", "release_lease", "status_counts",
    "store_size", "iter_events", "JoinedEvent", "Published", "StaleEvents", "active_slots", "close_unlearned",
    "apprentice_metrics", "log_date_range", "delete_logs", "insert_snapshot",
]


_INSERT_EVENT = insert(Event).returning(Event.seq)  # compiled once, reused with bound parameters
_INSERT_EXAMPLE = insert(EventExample)
_INSERT_REWARD = insert(Reward)
_INSERT_INTERACTION = insert(Interaction)
_INSERT_SNAPSHOT = insert(ModelSnapshot)

Db = Session | Connection


def _connection(db: Db) -> Connection:
    return db.connection() if isinstance(db, Session) else db


def _sqlite(connection: Connection) -> sqlite3.Connection | None:
    """The sqlite3 connection under ``connection`` (None on other backends), for the hot statements.

    On SQLite the Rank/Reward/learner statements run on the driver directly, inside the same
    transaction: SQLAlchemy's per-statement machinery costs several times what SQLite needs.
    They store exactly what the SQLAlchemy statements store (JSON as orjson text, booleans as
    0/1); every other backend runs the SQLAlchemy statements.
    """
    if connection.dialect.name == "sqlite":
        return connection.connection.dbapi_connection  # type: ignore[return-value]
    return None


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


_EVENT_INSERT_COLUMNS = (
    "event_id", "created_at", "user_id", "action_ids", "excluded_ids", "ranking", "probabilities",
    "chosen_index", "probability", "model_version", "extra", "deferred", "activated_at", "wait_until", "ready_at",
    "learning_mode", "model_index",
)
_EVENT_JSON_COLUMNS = frozenset({"action_ids", "excluded_ids", "ranking", "probabilities", "extra"})
_SQLITE_INSERT_EVENT = (
    f"INSERT INTO events ({', '.join(chr(34) + c + chr(34) for c in _EVENT_INSERT_COLUMNS)}, reward_count, slots) "
    f"VALUES ({', '.join('?' for _ in _EVENT_INSERT_COLUMNS)}, 0, ?)"
)
_SQLITE_INSERT_EXAMPLE = "INSERT INTO event_examples (seq, example) VALUES (?, ?)"
_SQLITE_JOIN_STATE = "SELECT seq, wait_until, ready_at, claimed_version, reward_count, user_id, slots FROM events WHERE event_id = ?"
_SQLITE_INSERT_REWARD = "INSERT INTO rewards (event_seq, value, received_at, counted) VALUES (?, ?, ?, ?)"
_SQLITE_INSERT_SLOT_REWARD = "INSERT INTO rewards (event_seq, value, received_at, counted, slot) VALUES (?, ?, ?, ?, ?)"
_SQLITE_COUNT_REWARD = "UPDATE events SET reward_count = ? WHERE seq = ?"
_SQLITE_COUNT_REWARD_READY = "UPDATE events SET reward_count = ?, ready_at = ? WHERE seq = ?"
_SQLITE_READY = "claimed_version IS NULL AND ready_at IS NOT NULL AND ready_at <= ? ORDER BY ready_at, seq LIMIT ?"
_SQLITE_READY_EVENTS = (
    "SELECT seq, event_id, created_at, (SELECT example FROM event_examples x WHERE x.seq = events.seq), ranking, "
    "probabilities, chosen_index, probability, model_version, "
    f"reward_count, learning_mode, slots FROM events WHERE {_SQLITE_READY}"
)
_SQLITE_READY_REWARDS = (
    f"SELECT event_seq, value, slot FROM rewards WHERE counted AND event_seq IN (SELECT seq FROM events WHERE {_SQLITE_READY}) "
    "ORDER BY id"
)
_SQLITE_CLAIM_LEARNED = (
    "UPDATE events SET claimed_version = ?, learned_version = ?, learned_reward = ? "
    "WHERE seq = ? AND claimed_version IS NULL AND reward_count = ?"
)
_SQLITE_CLAIM_UNLEARNED = (
    "UPDATE events SET claimed_version = ?, learned_reward = ? WHERE seq = ? AND claimed_version IS NULL AND reward_count = ?"
)


def insert_event(session: Db, values: dict[str, Any]) -> None:
    """Store a ranked event and its example (in one transaction: the caller's); a reused event id
    is a 409 (never an overwrite).

    On a 409 the session's transaction is spoiled; the caller's ``begin()`` block rolls it back.
    """
    connection = _connection(session)
    raw = _sqlite(connection)
    try:
        if raw is not None:
            slots = values.get("slots")
            row = tuple(_json(values[c]) if c in _EVENT_JSON_COLUMNS else values.get(c) for c in _EVENT_INSERT_COLUMNS)
            seq = raw.execute(_SQLITE_INSERT_EVENT, (*row, None if slots is None else _json(slots))).lastrowid
            raw.execute(_SQLITE_INSERT_EXAMPLE, (seq, values["example"]))
        else:
            event = {k: v for k, v in values.items() if k != "example"}
            seq = connection.execute(_INSERT_EVENT, event).scalar_one()
            connection.execute(_INSERT_EXAMPLE, {"seq": seq, "example": values["example"]})
    except (IntegrityError, sqlite3.IntegrityError):
        raise ApiError(409, "EventIdConflict", f"eventId {values['event_id']!r} was already used; send a new, unique eventId.", "eventId") from None


# Statements built once: constructing SQLAlchemy constructs per call costs more than running them.
_JOIN_STATE = select(
    Event.seq, Event.wait_until, Event.ready_at, Event.claimed_version, Event.reward_count, Event.user_id, Event.slots
).where(Event.event_id == bindparam("event_id"))
_JOIN_STATE_LOCKED = _JOIN_STATE.with_for_update()
_COUNT_REWARD = update(Event).where(Event.seq == bindparam("b_seq")).values(reward_count=bindparam("b_count"))
_COUNT_REWARD_READY = (
    update(Event).where(Event.seq == bindparam("b_seq")).values(reward_count=bindparam("b_count"), ready_at=bindparam("b_ready"))
)
_CLAIM_LEARNED = (
    update(Event)
    .where(Event.seq == bindparam("b_seq"), Event.claimed_version.is_(None), Event.reward_count == bindparam("b_count"))
    .values(claimed_version=bindparam("b_version"), learned_version=bindparam("b_version"), learned_reward=bindparam("b_reward"))
)
_CLAIM_UNLEARNED = (
    update(Event)
    .where(Event.seq == bindparam("b_seq"), Event.claimed_version.is_(None), Event.reward_count == bindparam("b_count"))
    .values(claimed_version=bindparam("b_version"), learned_reward=bindparam("b_reward"))
)
_CLAIM_LEARNED_SLOTS = (
    update(Event)
    .where(Event.seq == bindparam("b_seq"), Event.claimed_version.is_(None), Event.reward_count == bindparam("b_count"))
    .values(claimed_version=bindparam("b_version"), learned_version=bindparam("b_version"), learned_reward=bindparam("b_reward"),
            learned_slot_rewards=bindparam("b_slot_rewards", type_=Event.__table__.c.learned_slot_rewards.type))
)
_REWARDED_SLOTS = select(Reward.slot).where(Reward.event_seq == bindparam("b_seq"), Reward.counted.is_(True)).distinct()
_CHOSEN = select(Event.action_ids, Event.chosen_index).where(Event.seq == bindparam("b_seq"))
_ACTIVATE = (
    update(Event).where(Event.seq == bindparam("b_seq"))
    .values(activated_at=bindparam("b_now"), wait_until=bindparam("b_wait_until"), ready_at=bindparam("b_ready"))
)
_READY = and_(Event.claimed_version.is_(None), Event.ready_at.is_not(None), Event.ready_at <= bindparam("now"))
_READY_SEQS = select(Event.seq).where(_READY).order_by(Event.ready_at, Event.seq).limit(bindparam("limit"))
_READY_EVENTS = select(
    Event.seq, Event.event_id, Event.created_at, Event.example.label("example"), Event.ranking, Event.probabilities,
    Event.chosen_index, Event.probability, Event.model_version, Event.reward_count, Event.learning_mode, Event.slots,
).where(_READY).order_by(Event.ready_at, Event.seq).limit(bindparam("limit"))
_READY_REWARDS = (
    select(Reward.event_seq, Reward.value, Reward.slot)
    .where(Reward.event_seq.in_(_READY_SEQS.scalar_subquery()), Reward.counted.is_(True))
    .order_by(Reward.id)
)


def _is_postgresql(connection: Connection) -> bool:
    return connection.dialect.name == "postgresql"


class _JoinState(NamedTuple):
    seq: int
    wait_until: float | None
    ready_at: float | None
    claimed_version: int | None
    reward_count: int
    user_id: str | None
    slots: list[dict[str, Any]] | None  # multi-slot events only


def _join_state(connection: Connection, event_id: str, multislot: bool = False) -> _JoinState:
    """The few columns the join needs, row-locked on PostgreSQL (SQLite: the writer lock). An event of the
    other kind (a multi-slot event on the single-slot URL, or the reverse) is a 409."""
    raw = _sqlite(connection)
    if raw is not None:
        row = raw.execute(_SQLITE_JOIN_STATE, (event_id,)).fetchone()
        if row is not None and row[6] is not None:
            row = (*row[:6], orjson.loads(row[6]))
    else:
        query = _JOIN_STATE_LOCKED if _is_postgresql(connection) else _JOIN_STATE
        row = connection.execute(query, {"event_id": event_id}).first()
    if row is None:
        raise ApiError(404, "EventNotFound", f"No event with eventId {event_id!r}; reward or activate only events returned by Rank.", "eventId")
    state = _JoinState(*row)
    if multislot and state.slots is None:
        raise ApiError(409, "SingleSlotEvent", f"Event {event_id!r} was ranked by the single-slot Rank; send its reward to "
                       "/events/{eventId}/reward as {\"value\": ...} (and activate it at /events/{eventId}/activate).", "eventId")
    if not multislot and state.slots is not None:
        raise ApiError(409, "MultiSlotEvent", f"Event {event_id!r} was ranked by the multi-slot Rank; send its rewards to "
                       "/multislot/events/{eventId}/reward as {\"reward\": [{\"slotId\": ..., \"value\": ...}]} (and "
                       "activate it at /multislot/events/{eventId}/activate).", "eventId")
    return state


def active_slots(slots: list[dict[str, Any]]) -> list[int]:
    """Positions of the slots that were given an action (the slots VW sees, in order)."""
    return [i for i, slot in enumerate(slots) if slot["ranking"]]


def add_reward(session: Db, event_id: str, value: float, now: float, aggregation: str) -> bool:
    """Record a reward; returns whether it counts toward what is learned.

    Refuses (409) rewards that arrive after the event's reward wait has ended, and, with
    ``sum`` aggregation, rewards for an event the learner has already taken.
    """
    connection = _connection(session)
    event = _join_state(connection, event_id)
    if event.wait_until is not None and now > event.wait_until:
        raise ApiError(
            409, "RewardWindowClosed",
            f"The reward wait time for event {event_id!r} ended; rewards must arrive within reward_wait_time "
            "of the Rank call (or of activation for deferred events).", "eventId",
        )
    counted = True
    if event.claimed_version is not None:
        if aggregation == "sum":
            raise ApiError(409, "EventAlreadyLearned", f"Event {event_id!r} was already learned; its rewards are final.", "eventId")
        counted = False
    elif aggregation == "earliest" and event.reward_count > 0:
        counted = False  # earliest: only the first reward is learned; later ones are kept for the record
    raw = _sqlite(connection)
    if raw is not None:
        raw.execute(_SQLITE_INSERT_REWARD, (event.seq, value, now, counted))
        if counted:
            if aggregation == "earliest" and event.ready_at is not None:
                raw.execute(_SQLITE_COUNT_REWARD_READY, (event.reward_count + 1, min(event.ready_at, now), event.seq))
            else:
                raw.execute(_SQLITE_COUNT_REWARD, (event.reward_count + 1, event.seq))
    else:
        connection.execute(_INSERT_REWARD, {"event_seq": event.seq, "value": value, "received_at": now, "counted": counted})
        if counted:
            if aggregation == "earliest" and event.ready_at is not None:
                connection.execute(_COUNT_REWARD_READY, {"b_seq": event.seq, "b_count": event.reward_count + 1, "b_ready": min(event.ready_at, now)})
            else:
                connection.execute(_COUNT_REWARD, {"b_seq": event.seq, "b_count": event.reward_count + 1})
    if event.user_id:
        action_ids, chosen = connection.execute(_CHOSEN, {"b_seq": event.seq}).one()
        connection.execute(_INSERT_INTERACTION, {
            "user_id": event.user_id, "item_id": str(action_ids[chosen]), "type": "reward", "value": value,
            "timestamp": now, "event_id": event_id,
        })
    return counted


def add_slot_rewards(session: Db, event_id: str, rewards: list[tuple[str, float]], now: float, aggregation: str) -> None:
    """Record a multi-slot event's rewards, ``(slotId, value)`` each: every slot is joined as a single-slot
    event is (same wait, refusals and aggregation), slot by slot. With ``earliest`` the event is ready
    once every answered slot has its first reward; with ``sum`` at the end of its wait.

    A slot id the event does not have is a 404 naming ``reward[i].slotId`` (like an unknown event), a
    slot that was given no action a 409 (nothing was shown there to reward); nothing is stored then.
    """
    connection = _connection(session)
    event = _join_state(connection, event_id, multislot=True)
    assert event.slots is not None
    if event.wait_until is not None and now > event.wait_until:
        raise ApiError(
            409, "RewardWindowClosed",
            f"The reward wait time for event {event_id!r} ended; rewards must arrive within reward_wait_time "
            "of the Rank call (or of activation for deferred events).", "eventId",
        )
    if event.claimed_version is not None and aggregation == "sum":
        raise ApiError(409, "EventAlreadyLearned", f"Event {event_id!r} was already learned; its rewards are final.", "eventId")
    position = {slot["id"]: i for i, slot in enumerate(event.slots)}
    indices = []
    for i, (slot_id, _) in enumerate(rewards):
        target = f"reward[{i}].slotId"
        index = position.get(slot_id)
        if index is None:
            known = ", ".join(repr(slot["id"]) for slot in event.slots)
            raise ApiError(404, "UnknownSlotId", f"{target} {slot_id!r} is not a slot of event {event_id!r}; its slots are {known}.", target)
        if not event.slots[index]["ranking"]:
            raise ApiError(409, "SlotWithoutAction", f"{target} {slot_id!r} was given no action by Rank (every action it "
                           "allowed was excluded or taken by an earlier slot), so it has nothing to reward; leave it out.", target)
        indices.append(index)
    rewarded: set[int] = set()
    if aggregation == "earliest" and event.reward_count > 0:  # which slots already have their first reward
        rewarded = set(connection.execute(_REWARDED_SLOTS, {"b_seq": event.seq}).scalars())
    rows = []
    for index, (_, value) in zip(indices, rewards):
        counted = event.claimed_version is None and (aggregation == "sum" or index not in rewarded)
        if counted:
            rewarded.add(index)
        rows.append({"event_seq": event.seq, "value": value, "received_at": now, "counted": counted, "slot": index})
    counted_now = sum(1 for row in rows if row["counted"])
    raw = _sqlite(connection)
    if raw is not None:
        raw.executemany(_SQLITE_INSERT_SLOT_REWARD, [(r["event_seq"], r["value"], now, r["counted"], r["slot"]) for r in rows])
    else:
        connection.execute(_INSERT_REWARD, rows)
    if counted_now:
        count = event.reward_count + counted_now
        complete = rewarded.issuperset(active_slots(event.slots))
        if aggregation == "earliest" and event.ready_at is not None and complete:
            connection.execute(_COUNT_REWARD_READY, {"b_seq": event.seq, "b_count": count, "b_ready": min(event.ready_at, now)})
        else:
            connection.execute(_COUNT_REWARD, {"b_seq": event.seq, "b_count": count})


def activate_event(session: Db, event_id: str, now: float, wait: float, aggregation: str, multislot: bool = False) -> None:
    """Activate a deferred event: its reward wait starts now. Activating twice is harmless."""
    connection = _connection(session)
    event = _join_state(connection, event_id, multislot)
    if event.ready_at is not None:
        return
    if event.slots is None:
        complete = event.reward_count > 0
    else:  # earliest: ready at activation only if every answered slot already has its reward
        complete = event.reward_count > 0 and set(connection.execute(_REWARDED_SLOTS, {"b_seq": event.seq}).scalars()).issuperset(
            active_slots(event.slots))
    ready_at = now if (aggregation == "earliest" and complete) else now + wait
    connection.execute(_ACTIVATE, {"b_seq": event.seq, "b_now": now, "b_wait_until": now + wait, "b_ready": ready_at})


class _LearnRow(NamedTuple):
    """The Event columns event_line() and the claim read (SQLite fast path; other backends give SQLAlchemy rows)."""

    seq: int
    event_id: str
    created_at: float
    example: str
    ranking: list[int]
    probabilities: list[float]
    chosen_index: int
    probability: float
    model_version: int
    reward_count: int
    learning_mode: str | None
    slots: list[dict[str, Any]] | None


@dataclass(frozen=True)
class JoinedEvent:
    """An event with the reward the join assigned to it (multi-slot: each answered slot's, and their mean)."""

    event: Any  # a row with the Event columns event_line() reads, and reward_count
    reward: float
    slot_rewards: list[float] | None = None  # multi-slot: per answered slot (store.active_slots), in order

    @property
    def multislot(self) -> bool:
        return self.slot_rewards is not None


class StaleEvents(Exception):
    """An event changed (was rewarded or claimed) between the learner's read and its publish."""


def ready_events(session: Db, now: float, limit: int, aggregation: str, default_reward: float,
                 reward_min: float = -math.inf, reward_max: float = math.inf) -> list[JoinedEvent]:
    """Up to ``limit`` ready, unclaimed events, oldest-ready first, each with its aggregated reward
    (or the default). Locks nothing: publish_snapshot claims them, if they are unchanged.

    ``sum`` adds an event's counted rewards exactly (``math.fsum``: no rounding, whatever their order
    or sizes) and clamps the total to [reward_min, reward_max], the range each reward was accepted in:
    2,000 rewards of 1.0 to one event teach reward_max, not 2,000.
    """
    connection = _connection(session)
    raw = _sqlite(connection)
    if raw is not None:
        loads = orjson.loads
        events = [
            _LearnRow(*r[:4], loads(r[4]), loads(r[5]), *r[6:11], None if r[11] is None else loads(r[11]))
            for r in raw.execute(_SQLITE_READY_EVENTS, (now, limit))
        ]
        reward_rows = raw.execute(_SQLITE_READY_REWARDS, (now, limit)) if events else ()
    else:
        events = list(connection.execute(_READY_EVENTS, {"now": now, "limit": limit}))
        reward_rows = connection.execute(_READY_REWARDS, {"now": now, "limit": limit}) if events else ()
    rewards: dict[int, list[float]] = {}
    slot_values: dict[tuple[int, int], list[float]] = {}
    for seq, value, slot in reward_rows:
        if slot is None:
            rewards.setdefault(seq, []).append(value)
        else:
            slot_values.setdefault((seq, slot), []).append(value)

    def join(values: list[float] | None) -> float:
        if not values:
            return default_reward
        if aggregation == "sum":
            return min(max(math.fsum(values), reward_min), reward_max)
        return values[0]

    joined = []
    for event in events:
        if event.slots is None:
            joined.append(JoinedEvent(event, join(rewards.get(event.seq))))
        else:
            per_slot = [join(slot_values.get((event.seq, i))) for i in active_slots(event.slots)]
            joined.append(JoinedEvent(event, math.fsum(per_slot) / len(per_slot), per_slot))
    return joined


@dataclass(frozen=True)
class Published:
    """A multi-slot model to publish beside (or instead of) the single-slot one, with the events it learned."""

    version: int
    model: bytes
    vw_args: str
    events_learned: int
    learned: list[JoinedEvent]


def publish_snapshot(
    session: Db, version: int, model: bytes | None, vw_args: str, events_learned: int, now: float,
    learned: list[JoinedEvent], keep: int, lineage_created_at: float | None = None, multislot: Published | None = None,
) -> None:
    """Claim ``learned`` for model ``version``, mark them learned and store the model, atomically;
    prune old snapshots. The same for a multi-slot model (``multislot``) in the same transaction;
    ``model`` None publishes that one alone. Raises StaleEvents (the caller's transaction then rolls
    back) if an event was claimed or got a counted reward since ready_events() read it, and IntegrityError
    if snapshot ``version`` exists already (a model was imported or reset meanwhile)."""
    connection = _connection(session)
    if multislot is not None:
        claimed = connection.execute(_CLAIM_LEARNED_SLOTS, [
            {"b_seq": j.event.seq, "b_version": multislot.version, "b_reward": j.reward, "b_count": j.event.reward_count,
             "b_slot_rewards": j.slot_rewards}
            for j in multislot.learned
        ]).rowcount if multislot.learned else 0
        if claimed != len(multislot.learned):
            raise StaleEvents(f"{len(multislot.learned) - claimed} of {len(multislot.learned)} multi-slot events changed "
                              "while they were learned")
        connection.execute(insert(MultiSlotSnapshot), {
            "version": multislot.version, "created_at": now, "vw_args": multislot.vw_args, "model": multislot.model,
            "events_learned": multislot.events_learned,
        })
        cutoff = multislot.version - keep
        if cutoff > 0 and multislot.version % 10 == 0:
            connection.execute(delete(MultiSlotSnapshot).where(MultiSlotSnapshot.version <= cutoff))
    if model is None:
        return
    if learned:
        raw = _sqlite(connection)
        if raw is not None:
            claimed = raw.executemany(
                _SQLITE_CLAIM_LEARNED, [(version, version, j.reward, j.event.seq, j.event.reward_count) for j in learned]
            ).rowcount
        else:
            claimed = connection.execute(_CLAIM_LEARNED, [
                {"b_seq": j.event.seq, "b_version": version, "b_reward": j.reward, "b_count": j.event.reward_count}
                for j in learned
            ]).rowcount
        if claimed != len(learned):
            raise StaleEvents(f"{len(learned) - claimed} of {len(learned)} events changed while they were learned")
    insert_snapshot(connection, version, model, vw_args, events_learned, now, lineage_created_at)
    cutoff = version - keep
    if cutoff > 0 and version % 10 == 0:  # prune in batches, not on every publish
        connection.execute(delete(ModelSnapshot).where(ModelSnapshot.version <= cutoff))


def insert_snapshot(session: Db, version: int, model: bytes, vw_args: str, events_learned: int, now: float,
                    lineage_created_at: float | None) -> None:
    """Store one model snapshot (IntegrityError if ``version`` exists)."""
    _connection(session).execute(_INSERT_SNAPSHOT, {
        "version": version, "created_at": now, "vw_args": vw_args, "model": model, "events_learned": events_learned,
        "lineage_created_at": lineage_created_at,
    })


def close_unlearned(session: Db, version: int, skipped: list[JoinedEvent]) -> None:
    """Close the join of events that are not learned (ranked in LoggingOnly): claimed, with the reward the
    join gave them, but never marked learned. StaleEvents if one changed since ready_events() read it."""
    if not skipped:
        return
    connection = _connection(session)
    raw = _sqlite(connection)
    if raw is not None:
        claimed = raw.executemany(
            _SQLITE_CLAIM_UNLEARNED, [(version, j.reward, j.event.seq, j.event.reward_count) for j in skipped]
        ).rowcount
    else:
        claimed = connection.execute(_CLAIM_UNLEARNED, [
            {"b_seq": j.event.seq, "b_version": version, "b_reward": j.reward, "b_count": j.event.reward_count}
            for j in skipped
        ]).rowcount
    if claimed != len(skipped):
        raise StaleEvents(f"{len(skipped) - claimed} of {len(skipped)} logged-only events changed while they were joined")


Snapshot = type[ModelSnapshot] | type[MultiSlotSnapshot]


def latest_snapshot(session: Session, table: Snapshot = ModelSnapshot) -> Any:
    """The newest snapshot of ``table`` (ModelSnapshot: single-slot; MultiSlotSnapshot: multi-slot), or None."""
    return session.execute(select(table).order_by(table.version.desc()).limit(1)).scalar_one_or_none()


def latest_version(session: Session, table: Snapshot = ModelSnapshot) -> int:
    return session.execute(select(func.max(table.version))).scalar() or 0


def release_claims(session: Session) -> int:
    """Return claimed-but-unpublished events to the queue (left by a crashed learner of an older
    version, which claimed events before learning them; claims are now made only by publish)."""
    result = session.execute(
        update(Event).where(Event.claimed_version.is_not(None), Event.learned_version.is_(None)).values(claimed_version=None)
    )
    return result.rowcount or 0


def acquire_lease(session: Session, owner: str, now: float, ttl: float) -> bool:
    """Take or renew the single learner lease; False while another live learner holds it."""
    lease = session.execute(select(LearnerLease).where(LearnerLease.id == 1).with_for_update()).scalar_one_or_none()
    if lease is None:
        try:
            with session.begin_nested():
                session.execute(insert(LearnerLease).values(id=1, owner=owner, expires_at=now + ttl))
            return True
        except IntegrityError:
            return False
    if lease.owner != owner and lease.expires_at > now:
        return False
    lease.owner = owner
    lease.expires_at = now + ttl
    return True


def release_lease(session: Session, owner: str) -> None:
    session.execute(update(LearnerLease).where(LearnerLease.id == 1, LearnerLease.owner == owner).values(expires_at=0.0))


def status_counts(session: Session, now: float) -> dict[str, Any]:
    """The newest model and the counts a user checks first when "it isn't learning"."""
    snapshot = session.execute(  # metadata only: the model itself can be large
        select(ModelSnapshot.version, ModelSnapshot.created_at, ModelSnapshot.events_learned)
        .order_by(ModelSnapshot.version.desc()).limit(1)
    ).first()
    e = Event
    ranked = session.execute(select(func.count()).select_from(e)).scalar() or 0
    rewarded = session.execute(select(func.count()).select_from(e).where(e.reward_count > 0)).scalar() or 0
    learned = session.execute(select(func.count()).select_from(e).where(e.learned_version.is_not(None))).scalar() or 0
    waiting = session.execute(
        select(func.count()).select_from(e).where(e.claimed_version.is_(None), e.ready_at.is_not(None), e.ready_at > now)
    ).scalar() or 0
    ready = session.execute(
        select(func.count()).select_from(e).where(e.claimed_version.is_(None), e.ready_at.is_not(None), e.ready_at <= now)
    ).scalar() or 0
    logged_only = session.execute(
        select(func.count()).select_from(e).where(e.claimed_version.is_not(None), e.learned_version.is_(None))
    ).scalar() or 0
    inactive = session.execute(select(func.count()).select_from(e).where(e.deferred.is_(True), e.ready_at.is_(None))).scalar() or 0
    rewards = session.execute(select(func.count()).select_from(Reward)).scalar() or 0
    ignored = session.execute(select(func.count()).select_from(Reward).where(Reward.counted.is_(False))).scalar() or 0
    lease = session.execute(select(LearnerLease).where(LearnerLease.id == 1)).scalar_one_or_none()
    slot_snapshot = session.execute(
        select(MultiSlotSnapshot.version, MultiSlotSnapshot.created_at, MultiSlotSnapshot.events_learned)
        .order_by(MultiSlotSnapshot.version.desc()).limit(1)
    ).first()
    return {
        "multislotModel": {
            "version": slot_snapshot.version if slot_snapshot else 0,
            "lastLearnedAt": slot_snapshot.created_at if slot_snapshot else None,
            "eventsLearned": slot_snapshot.events_learned if slot_snapshot else 0,
        },
        "model": {
            "version": snapshot.version if snapshot else 0,
            "lastLearnedAt": snapshot.created_at if snapshot else None,
            "eventsLearned": snapshot.events_learned if snapshot else 0,
        },
        "events": {
            "ranked": ranked, "rewarded": rewarded, "learned": learned,
            "pending": waiting + ready, "waitingForRewards": waiting, "readyToLearn": ready,
            "deferredNotActivated": inactive, "loggedOnly": logged_only,
        },
        "rewards": {"received": rewards, "notCounted": ignored},
        "learner": {
            "running": bool(lease and lease.expires_at > now),
            "owner": lease.owner if lease else None,
        },
        "store": store_size(session),
    }


#: Tables whose rows `status` counts, by the names it shows.
_SIZED_TABLES = (("events", Event), ("eventExamples", EventExample), ("rewards", Reward), ("interactions", Interaction),
                 ("items", Item), ("modelSnapshots", ModelSnapshot), ("generatorModels", GeneratorModel))


def store_size(session: Session) -> dict[str, Any]:
    """Rows per table, the database's size in bytes and the oldest event's time: what log retention acts on.

    Bytes: SQLite's page_count x page_size (the main file; the WAL is checkpointed into it), PostgreSQL's
    pg_total_relation_size of our tables (indexes and TOAST included); both read catalog data, no scan.
    The row counts are count(*) (a scan of each table on PostgreSQL): status is not on the hot path."""
    rows = {name: session.execute(select(func.count()).select_from(model)).scalar() or 0 for name, model in _SIZED_TABLES}
    oldest = session.execute(select(func.min(Event.created_at))).scalar()
    dialect = session.get_bind().dialect.name
    size: int | None = None
    if dialect == "sqlite":
        pages = session.execute(text("PRAGMA page_count")).scalar() or 0
        size = pages * (session.execute(text("PRAGMA page_size")).scalar() or 0)
    elif dialect == "postgresql":
        size = int(session.execute(text(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND c.relkind = 'r' "
            "AND c.relname = ANY(:tables)"), {"tables": [model.__tablename__ for _, model in _SIZED_TABLES]}).scalar() or 0)
    return {"rows": rows, "bytes": size, "oldestEventAt": oldest}


def iter_events(
    session: Session, since: float | None = None, until: float | None = None, learned_only: bool = True,
    multislot: bool = False,
) -> Iterator[Event]:
    """Events in the order the learner learned them (snapshot by snapshot, claim order within
    one), then, unless ``learned_only``, the events not learned yet in rank order. Single-slot
    events, or with ``multislot`` the multi-slot ones (each kind is a model of its own).

    Replaying them in this order through a fresh VW reproduces the service's model.
    """
    kind = Event.slots.is_not(None) if multislot else Event.slots.is_(None)

    def window(query: Any) -> Any:
        query = query.where(kind)
        if since is not None:
            query = query.where(Event.created_at >= since)
        if until is not None:
            query = query.where(Event.created_at < until)
        return query

    versions = session.execute(
        select(Event.learned_version).where(Event.learned_version.is_not(None), kind).distinct().order_by(Event.learned_version)
    ).scalars().all()
    for version in versions:
        query = select(Event).where(Event.learned_version == version).order_by(Event.ready_at, Event.seq)
        yield from session.execute(window(query)).scalars()
    if learned_only:
        return
    last = 0
    while True:
        query = select(Event).where(Event.learned_version.is_(None), Event.seq > last).order_by(Event.seq).limit(1000)
        rows = list(session.execute(window(query)).scalars())
        if not rows:
            return
        yield from rows
        last = rows[-1].seq


#: Apprentice metrics look at the newest events only: at most this many, found among the newest
#: APPRENTICE_SCAN events (a bound on the work of a status call, whatever the log's size).
APPRENTICE_WINDOW = 1000
APPRENTICE_SCAN = 100_000
APPRENTICE_LAST_BATCH = 100


def apprentice_metrics(session: Session, reward_min: float, reward_max: float,
                       window: int = APPRENTICE_WINDOW) -> dict[str, Any] | None:
    """How the model compares with the baseline over the newest ``window`` Apprentice events whose
    join is closed (their reward is final); None when there are none.

    Every such event served the baseline with probability 1, so the log holds the baseline's reward
    and nothing about any other action. The model's own choice (``model_index``: the action it would
    have served in Online, exploration included) is known for each event, so:

    - ``agreement``: the share of events where the model's choice was the baseline;
    - ``baselineReward``: the baseline's average reward (observed);
    - ``modelReward``: the model's average reward can only be bounded: on the agreeing events it
      earned what the baseline earned; on the others nothing was observed, so they count between
      reward_min and reward_max. The interval narrows to the baseline's reward as agreement rises.
    - ``imitatedRewardShare``: Personalizer's ratio, the rewards of the agreeing events over all rewards.
    """
    top = session.execute(select(func.max(Event.seq))).scalar() or 0
    rows = session.execute(
        select(Event.chosen_index, Event.model_index, Event.learned_reward, Event.created_at)
        .where(Event.seq > top - APPRENTICE_SCAN, Event.learning_mode == "Apprentice", Event.slots.is_(None),
               Event.claimed_version.is_not(None), Event.learned_reward.is_not(None))  # single-slot events
        .order_by(Event.seq.desc()).limit(window)
    ).all()
    if not rows:
        return None
    rows.reverse()  # oldest first

    def batch(part: list[Any]) -> dict[str, Any]:
        n = len(part)
        agreed = [r.learned_reward for r in part if r.model_index == r.chosen_index]
        total = math.fsum(r.learned_reward for r in part)
        known = math.fsum(agreed)
        missing = n - len(agreed)
        return {
            "events": n, "agreedEvents": len(agreed), "agreement": len(agreed) / n,
            "baselineReward": total / n,
            "modelReward": {"lower": (known + missing * reward_min) / n, "upper": (known + missing * reward_max) / n},
            "rewardWhenAgreeing": known / len(agreed) if agreed else None,
            "sumOfRewards": total, "sumOfImitatedRewards": known,
            "imitatedRewardShare": known / total if total > 0 else None,
        }

    return {"from": rows[0].created_at, "to": rows[-1].created_at, **batch(rows),
            "lastBatch": batch(rows[-APPRENTICE_LAST_BATCH:])}


def log_date_range(session: Session) -> tuple[float | None, float | None]:
    """When the oldest and the newest stored event were ranked (None, None without events)."""
    first, last = session.execute(select(func.min(Event.created_at), func.max(Event.created_at))).one()
    return first, last


def delete_logs(session: Session) -> int:
    """Delete every event with its example and rewards (pending ones too); returns how many events.
    The model snapshots and the catalog's interactions stay."""
    session.execute(delete(Reward))
    session.execute(delete(EventExample))
    return session.execute(delete(Event)).rowcount or 0
