"""Database tables (SQLAlchemy 2 declarative). The schema is owned by Alembic migrations.

Times are UNIX seconds as floats: exact, portable between SQLite and PostgreSQL, and cheap
to compare in the join queries.
"""

from __future__ import annotations

from typing import Any, Optional

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, LargeBinary, String, Text, select
from sqlalchemy.orm import DeclarativeBase, Mapped, column_property, mapped_column

__all__ = ["Base", "Event", "EventExample", "Reward", "ModelSnapshot", "MultiSlotSnapshot", "LearnerLease", "Item",
           "Interaction", "GeneratorModel", "ServiceConfigurationRow", "LearningPolicy", "Job"]


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Event(Base):
    """One Rank decision: what was shown, what was chosen with which probability, and its join state.

    Join life cycle: ``ready_at`` is when the learner may take the event (NULL while a deferred
    event is not activated); ``claimed_version`` is set when a learner takes it (rewards that
    arrive later are refused or ignored, never silently lost); ``learned_version`` is the model
    snapshot that first contains it.
    """

    __tablename__ = "events"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(256), unique=True, nullable=False)
    created_at: Mapped[float] = mapped_column(Float, nullable=False)
    user_id: Mapped[Optional[str]] = mapped_column(String(256), nullable=True, index=True)
    action_ids: Mapped[list[Any]] = mapped_column(JSON, nullable=False)  # ids in _multi order
    excluded_ids: Mapped[list[Any]] = mapped_column(JSON, nullable=False)
    ranking: Mapped[list[Any]] = mapped_column(JSON, nullable=False)  # _multi indices, chosen first
    probabilities: Mapped[list[Any]] = mapped_column(JSON, nullable=False)  # aligned with ranking
    chosen_index: Mapped[int] = mapped_column(Integer, nullable=False)
    probability: Mapped[float] = mapped_column(Float, nullable=False)
    model_version: Mapped[int] = mapped_column(Integer, nullable=False)
    extra: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON, nullable=True)  # e.g. candidate provenance
    deferred: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    activated_at: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    wait_until: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    ready_at: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    reward_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    claimed_version: Mapped[Optional[int]] = mapped_column(Integer, nullable=True)
    learned_version: Mapped[Optional[int]] = mapped_column(Integer, nullable=True)
    learned_reward: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    # The learning mode the event was ranked in (NULL: Online, and events from before modes existed) and,
    # in Apprentice/LoggingOnly, the action the model would have served in Online (its sampled choice).
    learning_mode: Mapped[Optional[str]] = mapped_column(String(16), nullable=True)
    model_index: Mapped[Optional[int]] = mapped_column(Integer, nullable=True)
    # Multi-slot events only (NULL for single-slot ones): per slot of the request, in order,
    # {"id", "ranking": [_multi indices, chosen first], "probabilities": [aligned]} (both empty for a
    # slot left without an action). Then ranking/probabilities hold each answered slot's chosen action
    # and its probability, chosen_index the first slot's, probability their product, and
    # claimed/learned_version count multi-slot model versions (MultiSlotSnapshot).
    slots: Mapped[Optional[list[Any]]] = mapped_column(JSON(none_as_null=True), nullable=True)
    learned_slot_rewards: Mapped[Optional[list[Any]]] = mapped_column(JSON(none_as_null=True), nullable=True)  # per slot, as learned

    __table_args__ = (
        Index("ix_events_join", "claimed_version", "ready_at"),
        Index("ix_events_learned", "learned_version"),
        Index("ix_events_created", "created_at"),
    )


class EventExample(Base):
    """An event's DSJSON ``c`` object, exactly as VW parsed it (``Event.example`` reads it).

    Kept out of the event row on purpose: the example is kilobytes, written once and read by
    the learner and the export, while every reward and every learner step updates the event
    row. In one row, each of those updates rewrote the example's pages too (about 3x the
    time per update on SQLite).
    """

    __tablename__ = "event_examples"

    seq: Mapped[int] = mapped_column(ForeignKey("events.seq", ondelete="CASCADE"), primary_key=True, autoincrement=False)
    example: Mapped[str] = mapped_column(Text, nullable=False)


Event.example = column_property(  # type: ignore[attr-defined]
    select(EventExample.example).where(EventExample.seq == Event.seq).correlate_except(EventExample).scalar_subquery()
)


class Reward(Base):
    """A reward call, stored as received. ``counted`` is false for rewards the join ignores."""

    __tablename__ = "rewards"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_seq: Mapped[int] = mapped_column(ForeignKey("events.seq", ondelete="CASCADE"), nullable=False, index=True)
    value: Mapped[float] = mapped_column(Float, nullable=False)
    received_at: Mapped[float] = mapped_column(Float, nullable=False)
    counted: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    slot: Mapped[Optional[int]] = mapped_column(Integer, nullable=True)  # multi-slot: the slot's position in Event.slots


class ModelSnapshot(Base):
    """A versioned, serialized VW model published by the learner; rankers load the newest."""

    __tablename__ = "model_snapshots"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    created_at: Mapped[float] = mapped_column(Float, nullable=False)
    vw_args: Mapped[str] = mapped_column(Text, nullable=False)
    model: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    events_learned: Mapped[int] = mapped_column(Integer, nullable=False)  # cumulative, in this model lineage
    # When this lineage began: the first snapshot of a new model, a reset or an import (Personalizer's creationTime).
    lineage_created_at: Mapped[Optional[float]] = mapped_column(Float, nullable=True)


class MultiSlotSnapshot(Base):
    """A versioned multi-slot (``--ccb_explore_adf``) model: a lineage of its own, beside ModelSnapshot's."""

    __tablename__ = "multislot_snapshots"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    created_at: Mapped[float] = mapped_column(Float, nullable=False)
    vw_args: Mapped[str] = mapped_column(Text, nullable=False)
    model: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    events_learned: Mapped[int] = mapped_column(Integer, nullable=False)


class LearnerLease(Base):
    """At most one learner works at a time: it holds this row's lease and renews it."""

    __tablename__ = "learner_lease"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    owner: Mapped[str] = mapped_column(String(128), nullable=False)
    expires_at: Mapped[float] = mapped_column(Float, nullable=False)


class Item(Base):
    """A catalog item that candidate generators may propose."""

    __tablename__ = "items"

    id: Mapped[str] = mapped_column(String(256), primary_key=True)
    features: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    created_at: Mapped[float] = mapped_column(Float, nullable=False)
    updated_at: Mapped[float] = mapped_column(Float, nullable=False)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    #: The item's vector (catalog ``embedding``) as little-endian float32 bytes; one dimension per catalog.
    embedding: Mapped[Optional[bytes]] = mapped_column(LargeBinary, nullable=True)


class Interaction(Base):
    """Something a user did with an item (view, click, rating, purchase, reward, ...)."""

    __tablename__ = "interactions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(256), nullable=False)
    item_id: Mapped[str] = mapped_column(String(256), nullable=False)
    type: Mapped[str] = mapped_column(String(64), nullable=False)
    value: Mapped[float] = mapped_column(Float, nullable=False, default=1.0)
    timestamp: Mapped[float] = mapped_column(Float, nullable=False)
    event_id: Mapped[Optional[str]] = mapped_column(String(256), nullable=True)

    __table_args__ = (
        Index("ix_interactions_user", "user_id", "timestamp"),
        Index("ix_interactions_item", "item_id"),
    )


class GeneratorModel(Base):
    """What a candidate generator learned in `personalize train`, versioned per generator."""

    __tablename__ = "generator_models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), nullable=False, index=True)
    created_at: Mapped[float] = mapped_column(Float, nullable=False)
    data: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)


class ServiceConfigurationRow(Base):
    """The service configuration set through the API (one row, id 1); absent until the first PUT.

    ``version`` grows by one with every change: each process polls it (one small query a second)
    and applies a change without a restart.
    """

    __tablename__ = "service_configuration"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    updated_at: Mapped[float] = mapped_column(Float, nullable=False)
    values: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)


class LearningPolicy(Base):
    """The learning policy set through the API (``PUT /configurations/policy``): one row, id 1.

    No row means the configured default (setting ``learning_policy``). Every process reads it:
    the learner polls it and starts a new model when it changes; rankers follow the snapshots.
    """

    __tablename__ = "learning_policy"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(256), nullable=False)
    arguments: Mapped[str] = mapped_column(Text, nullable=False)
    updated_at: Mapped[float] = mapped_column(Float, nullable=False)


class Job(Base):
    """A background job (offline evaluation or feature importance) and, once done, its result.

    Created by the API with status ``NotSubmitted``; the process holding the learner lease claims
    it (``Running``, ``owner``, ``heartbeat``) and runs it in a worker process of its own; the
    result (JSON) or the error is stored here, so every server answers the same.
    """

    __tablename__ = "jobs"

    kind: Mapped[str] = mapped_column(String(32), primary_key=True)  # "evaluation" | "featureImportance"
    id: Mapped[str] = mapped_column(String(256), primary_key=True)
    name: Mapped[str] = mapped_column(String(256), nullable=False)
    job_type: Mapped[str] = mapped_column(String(16), nullable=False, default="Manual")  # Manual | Auto
    status: Mapped[str] = mapped_column(String(32), nullable=False)
    start_time: Mapped[float] = mapped_column(Float, nullable=False)
    end_time: Mapped[float] = mapped_column(Float, nullable=False)
    created_at: Mapped[float] = mapped_column(Float, nullable=False)
    request: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    result: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON, nullable=True)
    description: Mapped[Optional[str]] = mapped_column(Text, nullable=True)
    progress: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    owner: Mapped[Optional[str]] = mapped_column(String(128), nullable=True)
    heartbeat: Mapped[Optional[float]] = mapped_column(Float, nullable=True)

    __table_args__ = (Index("ix_jobs_status", "status"),)
