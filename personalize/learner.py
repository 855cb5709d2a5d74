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
import math
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
from personalize.policy import stored_arguments_query
from personalize.retention import PurgeCounts, purge_expired
from personalize.modes import learns
from personalize.service_config import LiveConfig
from personalize.ops.metrics import Metrics
from personalize.vw import Model, SlotModel

__all__ = ["Learner", "POLICY_POLL_SECONDS"]

log = logging.getLogger(__name__)

#: Snapshot cadence under load: after a step that learned at least BUSY_EVENTS events, the
#: learner thread waits at least BUSY_INTERVAL seconds (instead of learner_interval) before the
#: next step. Each step pays a fixed cost (serialize the model, store it, the ranker loads it:
#: several milliseconds of a GIL-bound process) however few events it learns; when rewards
#: arrive fast that cost is paid a few times a second instead of 20, while a trickle of rewards
#: is still learned within learner_interval, and a reward is in the served model well under 1 s.
BUSY_EVENTS = 16
BUSY_INTERVAL = 0.2
#: Seconds between the learner's reads of the stored learning policy (one tiny query, never per Rank).
POLICY_POLL_SECONDS = 1.0
#: While a new policy's model is rebuilt from the log, the lease is renewed every this many events.
REBUILD_LEASE_EVERY = 500


class Learner:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        clock: Callable[[], float] = time.time,
        on_publish: Callable[[int, bytes, str], None] | None = None,
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
        self._policy_checked = -math.inf
        self._refused_args: str | None = None  # a stored policy VW refused (logged once)
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

    def _stored_vw_args(self) -> str:
        """The VW arguments of the policy in force: the stored one (PUT /configurations/policy), else the setting."""
        with self.db.reading() as connection:
            stored = connection.execute(stored_arguments_query()).scalar()
        self._policy_checked = time.monotonic()
        default = " ".join(self.settings.vw_args)
        if stored is None:
            return default
        args = " ".join(self.settings.replace_policy(stored).vw_args)
        if args == self._refused_args:
            return default
        if args != self.vw_args:
            try:
                Model(args.split())
            except (RuntimeError, ValueError) as exc:  # checked when stored; a VW upgrade may still refuse it
                log.error("the stored learning policy %r cannot run (%s); learning under the configured default until "
                          "the policy is set again", stored, exc)
                self._refused_args = args
                return default
        return args

    def _restore(self) -> None:
        """Resume from the newest snapshot; release claims a crashed learner left behind. If the policy
        in force differs from the snapshot's, the model is rebuilt under it from the logged events."""
        if self._own_live:
            self.live.refresh()  # the stored configuration, also for a learner stepped without start()
        self.vw_args = args = self._stored_vw_args()
        with self.db.write() as session:
            released = store.release_claims(session)
            snapshot = store.latest_snapshot(session)
            slot_snapshot = store.latest_snapshot(session, MultiSlotSnapshot)
        if released:
            log.warning("released %d events claimed by an interrupted learner; they will be learned now", released)
        self.version = snapshot.version if snapshot is not None else 0
        rebuild_from: str | None = None
        if snapshot is not None and snapshot.vw_args == args:
            self._model = Model(["--quiet"], model_data=snapshot.model)
            self.events_learned = snapshot.events_learned
            self.lineage_created_at = snapshot.lineage_created_at
        elif snapshot is None:
            self._model = Model(args.split())
            self.events_learned = 0
            self.lineage_created_at = None  # set by the first publish
        else:
            rebuild_from = snapshot.vw_args  # after the multi-slot model is restored: _rebuild publishes
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
        if rebuild_from is not None:
            self._rebuild(rebuild_from)

    def _rebuild(self, old_args: str) -> None:
        """A new policy: a fresh model under ``self.vw_args`` that relearns every learned single-slot event still
        in the store, in the order they were learned, published as the next snapshot (a new lineage). Until then
        rankers keep the previous model, so Rank never falls back to an untrained one (what a user of a running
        service expects: new learning settings, not amnesia). Events that become ready meanwhile wait for the
        next step; events logged in LoggingOnly mode were never learned and stay so."""
        log.warning("learning policy changed (%r -> %r): rebuilding the model from the logged events", old_args, self.vw_args)
        started = time.monotonic()
        model = Model(self.vw_args.split())
        count = 0
        with self.db.read() as session:
            for event in store.iter_events(session):
                model.learn(event_line(event, event.learned_reward))
                count += 1
                if count % REBUILD_LEASE_EVERY == 0 and not self._renew():
                    raise RuntimeError("lost the learner lease while rebuilding the model")
        data = model.serialize()
        version = self.version + 1
        now = self.clock()
        with self.db.transaction() as connection:
            store.publish_snapshot(connection, version, data, self.vw_args, count, now, [], self.settings.snapshots_kept, now)
        self._model, self.version, self.events_learned, self.lineage_created_at = model, version, count, now
        log.warning("new model %d: %d logged events relearned in %.1f s", version, count, time.monotonic() - started)
        if self.on_publish is not None:
            self.on_publish(version, data, self.vw_args)

    def _renew(self) -> bool:
        """Renew the lease in the middle of a long piece of work; False if another learner took it."""
        with self.db.write() as session:
            got = store.acquire_lease(session, self.owner, time.time(), self.settings.learner_lease_seconds)
        self._lease_checked = time.monotonic()
        self._has_lease = got
        return got

    def policy_changed(self) -> None:
        """This process stored a new policy: follow it at the next step instead of at the next poll."""
        self._policy_checked = -math.inf

    def _follow_policy(self) -> None:
        """Every POLICY_POLL_SECONDS: if the stored policy changed, rebuild the model under it."""
        if time.monotonic() - self._policy_checked < POLICY_POLL_SECONDS:
            return
        args = self._stored_vw_args()
        if args != self.vw_args:
            old, self.vw_args = self.vw_args, args
            try:
                self._rebuild(old)
            except BaseException:
                self.invalidate()  # the next step restores from the database and rebuilds again
                raise

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

    def holds_lease(self) -> bool:
        """Whether this learner is the one working now (background jobs run beside it only then);
        inline learners take the lease on their next step."""
        if self.settings.learner == "inline" and not self._has_lease:
            with self._lock:
                return self._acquire()
        return self._has_lease

    def invalidate(self) -> None:
        """Forget in-memory state after a failed step: the next step restores from the database."""
        self._has_lease = False

    # -- one step --------------------------------------------------------------------
    def step(self) -> int:
        """Learn and publish the events that are ready now. Returns how many."""
        with self._lock:
            if not self._acquire():
                return 0
            self._follow_policy()
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
            self.on_publish(version, model, self.vw_args)
        if slots is not None and self.on_publish_slots is not None:
            self.on_publish_slots(slots.version, slots.model)
        return len(to_learn) + len(multi)
