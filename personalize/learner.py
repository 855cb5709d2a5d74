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

from personalize import store
from personalize.config import Settings
from personalize.db import Database
from personalize.db_health import OUTAGE_BACKOFF
from personalize.dsjson import event_line
from personalize.policy import stored_arguments_query
from personalize.vw import Model

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
    ) -> None:
        self.settings = settings
        self.db = db
        self.clock = clock
        self.on_publish = on_publish
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.vw_args = " ".join(settings.vw_args)  # stored with each snapshot: a change starts a new model
        self._policy_checked = -math.inf
        self._refused_args: str | None = None  # a stored policy VW refused (logged once)
        self.version = 0
        self.events_learned = 0
        self._model: Model | None = None
        self._lock = threading.Lock()  # one step at a time (inline mode calls from request threads)
        self._has_lease = False
        self._lease_checked = 0.0
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
        self.vw_args = self._stored_vw_args()
        with self.db.write() as session:
            released = store.release_claims(session)
            snapshot = store.latest_snapshot(session)
        if released:
            log.warning("released %d events claimed by an interrupted learner; they will be learned now", released)
        self.version = snapshot.version if snapshot is not None else 0
        if snapshot is not None and snapshot.vw_args == self.vw_args:
            self._model = Model(["--quiet"], model_data=snapshot.model)
            self.events_learned = snapshot.events_learned
        elif snapshot is None:
            self._model = Model(self.vw_args.split())
            self.events_learned = 0
        else:
            self._rebuild(snapshot.vw_args)

    def _rebuild(self, old_args: str) -> None:
        """A new policy: a fresh model under ``self.vw_args`` that relearns every learned event still in the
        store, in the order they were learned, published as the next snapshot. Until then rankers keep the
        previous model, so Rank never falls back to an untrained one (what a user of a running service expects:
        new learning settings, not amnesia). Events that become ready meanwhile wait for the next step."""
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
        with self.db.transaction() as connection:
            store.publish_snapshot(connection, version, data, self.vw_args, count, self.clock(), [], self.settings.snapshots_kept)
        self._model, self.version, self.events_learned = model, version, count
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
            assert self._model is not None
            settings = self.settings
            with self.db.reading() as connection:  # no write lock while reading and learning
                joined = store.ready_events(
                    connection, self.clock(), settings.learner_batch, settings.reward_aggregation, settings.default_reward,
                    settings.reward_min, settings.reward_max,
                )
            if not joined:
                return 0
            learn = self._model.learn
            for item in joined:
                learn(event_line(item.event, item.reward))
            model = self._model.serialize()
            version = self.version + 1
            try:
                with self.db.transaction() as connection:
                    store.publish_snapshot(
                        connection, version, model, self.vw_args, self.events_learned + len(joined),
                        self.clock(), joined, settings.snapshots_kept,
                    )
            except store.StaleEvents as error:  # a reward raced the step: relearn from the last snapshot
                log.info("learner step discarded (%s); relearning", error)
                self.invalidate()
                return 0
            self.version = version  # before events_learned: whoever sees the new count sees the new version
            self.events_learned += len(joined)
        if self.on_publish is not None:
            self.on_publish(version, model, self.vw_args)
        return len(joined)
