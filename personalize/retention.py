"""Log retention (Personalizer's ``logRetentionDays``): old events leave the store in small batches.

An event older than ``log_retention_days`` is purged with its rewards and example when it is

- **learned** (the model holds what it taught; its rewards are final), or
- **expired**: a deferred event that was never activated (it was never shown, so it will never
  be learned).

Nothing else is purged: an event still in its reward wait, or ready and not learned yet, stays
whatever its age (the learner takes it first). The model keeps what it learned; interactions (the
generators' training data) and the catalog are not events and are kept (delete a user's data
with ``DELETE /users/{userId}``).

The learner that holds the lease runs the purge, at most every PURGE_INTERVAL seconds, in
transactions of at most PURGE_BATCH events with a pause between them, so a Rank (which needs
SQLite's write lock) waits at most one batch. One run lasts at most PURGE_RUN_SECONDS; a backlog
(retention just turned on over a large store) is worked off in such slices between learner steps,
so learning never stops for long. On PostgreSQL the batch's rows are taken with
``FOR UPDATE SKIP LOCKED``: a second purger (a learner losing its lease mid-purge) skips them
instead of waiting, and a Reward that locked its event first keeps it for this round.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from sqlalchemy import Connection, and_, bindparam, delete, or_, select

from personalize.db import Database
from personalize.models import Event, EventExample, Reward

__all__ = ["PurgeCounts", "purge_batch", "purge_expired", "PURGE_BATCH", "PURGE_INTERVAL", "PURGE_RUN_SECONDS", "DAY"]

DAY = 86_400.0
#: Events per purge transaction: SQLite's write lock is held for one batch (~2-5 ms, see docs/deploy.md).
PURGE_BATCH = 100
#: Seconds between purge runs of the learner.
PURGE_INTERVAL = 60.0
#: Seconds between two batches of one run: writers waiting for the lock go first.
PURGE_PAUSE = 0.005
#: Longest purge run; the learner's next step comes after it, and the purge goes on after that step.
PURGE_RUN_SECONDS = 0.25

_PURGEABLE = and_(
    Event.created_at < bindparam("cutoff"),
    or_(Event.learned_version.is_not(None), and_(Event.deferred.is_(True), Event.ready_at.is_(None))),
)
_BATCH = select(Event.seq).where(_PURGEABLE).order_by(Event.seq).limit(bindparam("limit"))
_BATCH_LOCKED = _BATCH.with_for_update(skip_locked=True)


@dataclass
class PurgeCounts:
    """Rows removed, per table."""

    events: int = 0
    rewards: int = 0
    examples: int = 0
    batches: int = field(default=0, compare=False)
    finished: bool = field(default=True, compare=False)  # False: the run's time was up with events left

    def add(self, other: "PurgeCounts") -> None:
        self.events += other.events
        self.rewards += other.rewards
        self.examples += other.examples
        self.batches += other.batches


def purge_batch(connection: Connection, cutoff: float, limit: int = PURGE_BATCH) -> PurgeCounts:
    """Delete up to ``limit`` purgeable events created before ``cutoff`` (UNIX seconds), with their
    rewards and examples, in the caller's transaction."""
    query = _BATCH_LOCKED if connection.dialect.name == "postgresql" else _BATCH
    seqs = list(connection.execute(query, {"cutoff": cutoff, "limit": limit}).scalars())
    if not seqs:
        return PurgeCounts()
    rewards = connection.execute(delete(Reward).where(Reward.event_seq.in_(seqs))).rowcount
    examples = connection.execute(delete(EventExample).where(EventExample.seq.in_(seqs))).rowcount
    events = connection.execute(delete(Event).where(Event.seq.in_(seqs))).rowcount
    return PurgeCounts(events=events, rewards=rewards, examples=examples, batches=1)


def purge_expired(db: Database, now: float, retention_days: float, limit: int = PURGE_BATCH,
                  stop: threading.Event | None = None, pause: float = PURGE_PAUSE,
                  seconds: float = float("inf")) -> PurgeCounts:
    """Purge, batch by batch, the events past the retention period, for at most ``seconds``; returns what
    was removed (``finished`` False if time was up first). ``retention_days < 0`` keeps everything."""
    total = PurgeCounts()
    if retention_days < 0:
        return total
    cutoff = now - retention_days * DAY
    deadline = time.monotonic() + seconds
    while stop is None or not stop.is_set():
        with db.transaction() as connection:
            counts = purge_batch(connection, cutoff, limit)
        total.add(counts)
        if counts.events < limit:
            break
        if time.monotonic() >= deadline:
            total.finished = False
            break
        time.sleep(pause)
    return total
