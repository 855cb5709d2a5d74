"""The learner: takes joined events in order, learns them with VW, publishes snapshots.

It never answers a request. One learner works at a time (a lease row in the database),
so N server processes can share one learner process over PostgreSQL. A step reads the
ready events, learns them, and then claims them, marks them learned and stores the new
snapshot in one transaction (see personalize.store): a crash before that commit leaves
the events ready to be relearned from the last snapshot, so nothing is learned twice or
skipped. If a reward changed an event in the meantime, the transaction publishes nothing
and the learner restores its last snapshot and relearns.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Callable

from sqlalchemy.exc import IntegrityError

from personalize import store
from personalize.config import Settings
from personalize.db import Database
from personalize.db_health import OUTAGE_BACKOFF
from personalize.dsjson import event_line, multislot_line
from personalize import retention
from personalize.models import MultiSlotSnapshot
from personalize.retention import PurgeCounts, purge_expired
from personalize.modes import learns
from personalize.service_config import LiveConfig
from personalize.ops.metrics import Metrics
from personalize.vw import Model, SlotModel

__all__ = ["Learner"]

log = logging.getLogger(__name__)

#: Snapshot cadence under load: after a step that learned at least BUSY_EVENTS events, the
#: learner thread waits at least BUSY_INTERVAL seconds (instead of learner_interval) before the
#: next step. Each step pays a fixed cost (serialize the model, store it, the ranker loads it:
#: several milliseconds of a GIL-bound process) however few events it learns; when rewards
#: arrive fast that cost is paid a few times a second instead of 20, while a trickle of rewards
#: is still learned within learner_interval, and a reward is in the served model well under 1 s.
BUSY_EVENTS = 16
BUSY_INTERVAL = 0.2


class Learner:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        clock: Callable[[], float] = time.time,
        on_publish: Callable[[int, bytes], None] | None = None,
        live: LiveConfig | None = None,
        metrics: Metrics | None = None,
        on_publish_slots: Callable[[int, bytes], None] | None = None,
    ) -> None:
        self.settings = settings
        # The live service configuration (reward aggregation, default reward); a learner of its own
        # (`personalize learn`) polls it itself, a server's learner shares the server's.
        self._own_live = live is None
        self.live = live if live is not None else LiveConfig(settings, db)
        self.db = db
        self.clock = clock
        self.on_publish = on_publish
        self.metrics = metrics or Metrics.get()
        self.on_publish_slots = on_publish_slots
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.vw_args = " ".join(settings.vw_args)  # stored with each snapshot: a change starts a new model
        self.version = 0
        self.events_learned = 0
        self.lineage_created_at: float | None = None
        self._model: Model | None = None
        # The multi-slot model (--ccb_explore_adf): a lineage of its own, learned in the same steps.
        self.slot_vw_args = " ".join(settings.multislot_vw_args)
        self.slot_version = 0
        self.slot_events_learned = 0
        self._slot_model: SlotModel | None = None
        self._lock = threading.Lock()  # one step at a time (inline mode calls from request threads)
        self._has_lease = False
        self._lease_checked = 0.0
        self._purge_due = 0.0  # time.monotonic() when the next retention purge may run
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------
    def _acquire(self) -> bool:
        """Hold the learner lease (renewed every few seconds); restore state when newly taken."""
        ttl = self.settings.learner_lease_seconds
        if self._has_lease and time.monotonic() - self._lease_checked < ttl / 3:
            return True
        with self.db.write() as session:
            got = store.acquire_lease(session, self.owner, time.time(), ttl)
        self._lease_checked = time.monotonic()
        if got and not self._has_lease:
            self._restore()
        self._has_lease = got
        return got

    def _restore(self) -> None:
        """Resume from the newest snapshot; release claims a crashed learner left behind."""
        if self._own_live:
            self.live.refresh()  # the stored configuration, also for a learner stepped without start()
        args = self.vw_args
        with self.db.write() as session:
            released = store.release_claims(session)
            snapshot = store.latest_snapshot(session)
            slot_snapshot = store.latest_snapshot(session, MultiSlotSnapshot)
        if released:
            log.warning("released %d events claimed by an interrupted learner; they will be learned now", released)
        if snapshot is not None and snapshot.vw_args == args:
            self._model = Model(["--quiet"], model_data=snapshot.model)
            self.events_learned = snapshot.events_learned
            self.lineage_created_at = snapshot.lineage_created_at
        else:
            if snapshot is not None:
                log.warning("learning policy changed (%r -> %r): starting a new model", snapshot.vw_args, args)
            self._model = Model(self.settings.vw_args)
            self.events_learned = 0
            self.lineage_created_at = None  # set by the first publish
        self.version = snapshot.version if snapshot is not None else 0
        if slot_snapshot is not None and slot_snapshot.vw_args == self.slot_vw_args:
            self._slot_model = SlotModel(["--quiet"], model_data=slot_snapshot.model)
            self.slot_events_learned = slot_snapshot.events_learned
        else:
            if slot_snapshot is not None:
                log.warning("multi-slot learning policy changed (%r -> %r): starting a new multi-slot model",
                            slot_snapshot.vw_args, self.slot_vw_args)
            self._slot_model = SlotModel(self.settings.multislot_vw_args)
            self.slot_events_learned = 0
        self.slot_version = slot_snapshot.version if slot_snapshot is not None else 0

    def start(self) -> None:
        """Run the learner in a daemon thread (the default single-process mode)."""
        self._stop.clear()
        if self._own_live:
            self.live.start()
        self._thread = threading.Thread(target=self.run, name="personalize-learner", daemon=True)
        self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Block while the learner thread runs; True once it has stopped."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self._thread is None or not self._thread.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread and hand the lease back, so a successor starts at once."""
        self._stop.set()
        if self._own_live:
            self.live.stop()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._has_lease:
            self._has_lease = False
            try:
                with self._lock, self.db.write() as session:
                    store.release_lease(session, self.owner)
            except Exception:  # database gone at shutdown: the lease simply expires
                log.warning("could not release the learner lease; it expires in %ss", self.settings.learner_lease_seconds)

    def run(self) -> None:
        """Learn until stopped, one step every learner_interval (BUSY_INTERVAL after a busy step;
        back to back while a full batch waits)."""
        while not self._stop.is_set():
            try:
                learned = self.step()
                self.maybe_purge()
            except Exception as error:  # keep learning after a transient database error
                self.invalidate()
                if self.db.health.failed(error):  # an outage: logged once by db_health; retry at a calm pace
                    self._stop.wait(OUTAGE_BACKOFF)
                    continue
                log.exception("learner step failed; restoring from the last snapshot and retrying")
                learned = 0
            if learned < self.settings.learner_batch:
                # Pause between steps even when busy: events then arrive in batches, and the
                # per-step costs (snapshot, serialize, ranker reload) are paid once per batch.
                interval = self.settings.learner_interval
                self._stop.wait(max(interval, BUSY_INTERVAL) if learned >= BUSY_EVENTS else interval)

    def maybe_purge(self) -> PurgeCounts | None:
        """Apply log_retention_days (personalize.retention) when due: every PURGE_INTERVAL seconds, or
        at once after a run whose time slice ended with events left.

        Only the lease holder purges, so with several processes the batches never compete."""
        days = self.live.current.log_retention_days  # the service configuration's, changed live by the API
        if days < 0 or not self._has_lease or time.monotonic() < self._purge_due:
            return None
        counts = purge_expired(self.db, self.clock(), days, retention.PURGE_BATCH, stop=self._stop, pause=retention.PURGE_PAUSE,
                               seconds=retention.PURGE_RUN_SECONDS)
        self._purge_due = time.monotonic() + (retention.PURGE_INTERVAL if counts.finished else 0.0)
        if counts.events:
            log.info("log retention (%s days): purged %d events, %d rewards", days, counts.events, counts.rewards)
        return counts

    def invalidate(self) -> None:
        """Forget in-memory state after a failed step: the next step restores from the database."""
        self._has_lease = False

    # -- one step --------------------------------------------------------------------
    def step(self) -> int:
        """Learn and publish the events that are ready now. Returns how many."""
        with self._lock:
            if not self._acquire():
                return 0
            assert self._model is not None and self._slot_model is not None
            settings = self.settings
            config = self.live.current  # once: one step joins with one whole configuration
            with self.db.reading() as connection:  # no write lock while reading and learning
                joined = store.ready_events(
                    connection, self.clock(), settings.learner_batch, config.reward_aggregation, config.default_reward,
                    settings.reward_min, settings.reward_max,
                )
            if not joined:
                return 0
            single = [item for item in joined if not item.multislot]
            to_learn = [item for item in single if learns(item.event.learning_mode)]
            multi = [item for item in joined if item.multislot and learns(item.event.learning_mode)]
            # LoggingOnly: joined, never learned (single- and multi-slot alike)
            skipped = [item for item in joined if not learns(item.event.learning_mode)]
            if not to_learn and not multi:
                try:
                    with self.db.transaction() as connection:
                        store.close_unlearned(connection, self.version, skipped)
                except store.StaleEvents as error:
                    log.info("learner step discarded (%s); retrying", error)
                return 0
            learn = self._model.learn
            for item in to_learn:
                learn(event_line(item.event, item.reward))
            model = self._model.serialize() if to_learn else None
            version = self.version + 1 if to_learn else self.version
            now = self.clock()
            lineage = self.lineage_created_at if self.lineage_created_at is not None else now
            slots: store.Published | None = None
            if multi:
                learn_slots = self._slot_model.learn
                for item in multi:
                    assert item.slot_rewards is not None
                    learn_slots(multislot_line(item.event, item.slot_rewards))
                slots = store.Published(self.slot_version + 1, self._slot_model.serialize(), self.slot_vw_args,
                                        self.slot_events_learned + len(multi), multi)
            try:
                with self.db.transaction() as connection:
                    store.publish_snapshot(
                        connection, version, model, self.vw_args, self.events_learned + len(to_learn),
                        now, to_learn, settings.snapshots_kept, lineage, multislot=slots,
                    )
                    store.close_unlearned(connection, version, skipped)
            except store.StaleEvents as error:  # a reward raced the step: relearn from the last snapshot
                log.info("learner step discarded (%s); relearning", error)
                self.invalidate()
                return 0
            except IntegrityError:  # snapshot `version` exists: a model was imported or reset; continue from it
                log.info("a model was imported or reset; continuing from it")
                self.invalidate()
                return 0
            self.version = version  # before events_learned: whoever sees the new count sees the new version
            self.events_learned += len(to_learn)
            if model is not None:
                self.lineage_created_at = lineage
            if slots is not None:
                self.slot_version = slots.version
                self.slot_events_learned = slots.events_learned
        self.metrics.learned_batch(item.reward for item in to_learn + multi)
        if model is not None and self.on_publish is not None:
            self.on_publish(version, model)
        if slots is not None and self.on_publish_slots is not None:
            self.on_publish_slots(slots.version, slots.model)
        return len(to_learn) + len(multi)
