"""Background jobs (offline evaluations and feature importance): their rows, the runner, the worker.

- The API creates a job row (``NotSubmitted``) and returns at once; requests never do the work.
- ``JobRunner`` is a thread of the process that runs the learner (the server's learner thread, or
  ``personalize learn``): while that learner holds the lease, it claims the oldest waiting job and runs
  it in a **worker process** of its own (``python -m personalize.evaluation.worker``, at a lower CPU
  priority), so a long evaluation neither holds the server's GIL nor slows Rank more than the CPU it
  takes. The runner renews the job's heartbeat while the worker runs; the worker stores progress and
  then the result (or the error) in the row, so every server answers the same.
- A job whose heartbeat is older than ``STALE_SECONDS`` (its runner's process died) is marked
  ``Failed``; a runner that is stopped (server shutdown) puts its job back in the queue.
- It also creates the automatic evaluations of auto-optimization (``personalize.evaluation.auto``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable

import orjson
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from personalize import store
from personalize.config import Settings
from personalize.db import Database
from personalize.dsjson import event_line
from personalize.evaluation.auto import AutoOptimization, decide, next_auto_window
from personalize.models import Job, ModelSnapshot
from personalize.policy import Policy, current_policy, effective_vw_args, store_policy

__all__ = ["EVALUATION", "FEATURE_IMPORTANCE", "JobExists", "create_job", "get_job", "list_jobs", "delete_job",
           "claim_next", "run_job", "JobRunner", "STALE_SECONDS", "JOB_POLL_SECONDS", "FINISHED"]

log = logging.getLogger(__name__)

EVALUATION = "evaluation"
FEATURE_IMPORTANCE = "featureImportance"
#: Statuses after which a job's result is final.
FINISHED = ("Succeeded", "Failed", "OptimalPolicyApplied", "OnlinePolicyRetained")
#: Seconds between a runner's looks for waiting jobs (one small query).
JOB_POLL_SECONDS = 1.0
#: A Running job whose heartbeat is older than this has lost its runner.
STALE_SECONDS = 60.0
#: Seconds between heartbeats/progress writes.
HEARTBEAT_SECONDS = 2.0
#: Niceness of worker processes: Rank's threads get the CPU first.
WORKER_NICENESS = 19


class JobExists(Exception):
    """A job with this id already exists (ids are chosen by the client; one job per id)."""


class JobGone(Exception):
    """The job's row was deleted while it ran: stop working on it."""


# -- rows ------------------------------------------------------------------------------------------------
def create_job(session: Session, kind: str, job_id: str, name: str, start: float, end: float, request: dict[str, Any],
               now: float, job_type: str = "Manual") -> Job:
    if session.get(Job, (kind, job_id)) is not None:
        raise JobExists(job_id)
    job = Job(kind=kind, id=job_id, name=name, job_type=job_type, status="NotSubmitted", start_time=start,
              end_time=end, created_at=now, request=request, progress=0.0)
    session.add(job)
    return job


def get_job(session: Session, kind: str, job_id: str) -> Job | None:
    return session.get(Job, (kind, job_id))


def list_jobs(session: Session, kind: str, top: int | None = None, skip: int = 0, job_type: str | None = None) -> list[Job]:
    query = select(Job).where(Job.kind == kind).order_by(Job.created_at, Job.id).offset(skip)
    if job_type is not None:
        query = query.where(Job.job_type == job_type)
    if top is not None:
        query = query.limit(top)
    return list(session.execute(query).scalars())


def delete_job(session: Session, kind: str, job_id: str) -> bool:
    return bool(session.execute(delete(Job).where(Job.kind == kind, Job.id == job_id)).rowcount)


def claim_next(session: Session, owner: str, now: float) -> tuple[str, str] | None:
    """Take the oldest waiting job (``Running``, owned by ``owner``); None when none waits."""
    row = session.execute(select(Job.kind, Job.id).where(Job.status == "NotSubmitted")
                          .order_by(Job.created_at, Job.id).limit(1)).first()
    if row is None:
        return None
    claimed = session.execute(update(Job).where(Job.kind == row.kind, Job.id == row.id, Job.status == "NotSubmitted")
                              .values(status="Running", owner=owner, heartbeat=now, progress=0.0)).rowcount
    return (row.kind, row.id) if claimed else None


def fail_stale(session: Session, now: float) -> int:
    return session.execute(
        update(Job).where(Job.status == "Running", Job.heartbeat < now - STALE_SECONDS)
        .values(status="Failed", description="the process running this job stopped; delete it and create it again")
    ).rowcount or 0


def _beat(db: Database, kind: str, job_id: str, owner: str, now: float, progress: float | None = None) -> None:
    values: dict[str, Any] = {"heartbeat": now}
    if progress is not None:
        values["progress"] = progress
    with db.write() as session:
        if not session.execute(update(Job).where(Job.kind == kind, Job.id == job_id, Job.owner == owner)
                               .values(**values)).rowcount:
            raise JobGone(job_id)


def _finish(db: Database, kind: str, job_id: str, owner: str, status: str, result: dict[str, Any] | None,
            description: str | None) -> None:
    with db.write() as session:
        session.execute(update(Job).where(Job.kind == kind, Job.id == job_id, Job.owner == owner).values(
            status=status, result=result, description=description, progress=1.0 if result is not None else Job.progress))


# -- the work --------------------------------------------------------------------------------------------
def _events(session: Session, start: float, end: float) -> list[Any]:
    return list(store.iter_events(session, since=start, until=end))


def _evaluate(settings: Settings, db: Database, job: Job, progress: Callable[[float], None]) -> dict[str, Any]:
    from personalize.evaluation.offline import PolicySpec, run_evaluation
    from personalize.evaluation.replay import parse_dsjson

    with db.read() as session:
        rows = _events(session, job.start_time, job.end_time)
        current = current_policy(session, settings)
        lines = [event_line(e, e.learned_reward) for e in rows]
        times = [e.created_at for e in rows]
    events = [next(parse_dsjson([line])) for line in lines]
    policies = [PolicySpec(p["name"], p["arguments"]) for p in job.request.get("policies") or []]
    return run_evaluation(events, times, PolicySpec(current.name, current.arguments), policies,
                          bool(job.request.get("enablePolicyOptimization")), settings, progress)


def _importance(settings: Settings, db: Database, job: Job, progress: Callable[[float], None]) -> dict[str, Any]:
    from personalize.evaluation.importance import feature_importance
    from personalize.vw import Model

    with db.read() as session:
        rows = _events(session, job.start_time, job.end_time)
        contexts = [orjson.loads(e.example) for e in rows]
        lines = [event_line(e, e.learned_reward) for e in rows]
        current = current_policy(session, settings)
        snapshot = session.execute(select(ModelSnapshot).order_by(ModelSnapshot.version.desc()).limit(1)).scalar()
    if not contexts:
        raise ValueError("no learned events in the time range; widen startTime..endTime or wait for rewards")
    if snapshot is not None:
        model = Model(["--quiet"], model_data=snapshot.model)
        source = f"model version {snapshot.version}"
    else:
        model = Model(effective_vw_args(current.arguments))
        for line in lines:
            model.learn(line)
        source = "a model trained on the range's events"
    scores = feature_importance(contexts, model, progress)
    return {"events": len(contexts), "model": source, "featureScores": scores}


def run_job(settings: Settings, db: Database, kind: str, job_id: str, owner: str,
            clock: Callable[[], float] = time.time, on_progress: Callable[[float], None] | None = None) -> str:
    """Do one claimed job and store its result; returns its final status."""
    with db.read() as session:
        job = get_job(session, kind, job_id)
    if job is None:
        return "Deleted"
    last = [0.0]
    worked = [time.monotonic()]

    def progress(fraction: float) -> None:
        if on_progress is not None:
            on_progress(fraction)
        if settings.job_cpu_share < 1.0 and fraction < 1.0:  # pause in proportion to the step just done: Rank keeps the CPU's rest
            time.sleep(min((time.monotonic() - worked[0]) * (1.0 / settings.job_cpu_share - 1.0), 30.0))
            worked[0] = time.monotonic()
        if time.monotonic() - last[0] >= HEARTBEAT_SECONDS or fraction >= 1.0:
            last[0] = time.monotonic()
            _beat(db, kind, job_id, owner, clock(), fraction)

    try:
        result = (_evaluate if kind == EVALUATION else _importance)(settings, db, job, progress)
    except JobGone:
        return "Deleted"
    except Exception as exc:  # noqa: BLE001 - the job's answer is its error
        log.warning("%s %s failed: %s", kind, job_id, exc)
        _finish(db, kind, job_id, owner, "Failed", None, str(exc))
        return "Failed"
    status, description = "Succeeded", None
    if kind == EVALUATION and job.job_type == "Auto":
        decision = decide(result)
        description = decision.reason
        status = "OnlinePolicyRetained"
        if decision.apply and decision.arguments is not None:
            with db.write() as session:
                store_policy(session, Policy(f"auto-optimized ({job_id})", decision.arguments), clock())
            status = "OptimalPolicyApplied"
    _finish(db, kind, job_id, owner, status, result, description)
    return status


# -- the runner ------------------------------------------------------------------------------------------
class JobRunner:
    """Claims and runs jobs while ``holds_lease()``; one at a time, each in a worker process."""

    def __init__(self, settings: Settings, db: Database, holds_lease: Callable[[], bool],
                 clock: Callable[[], float] = time.time,
                 auto_settings: Callable[[], AutoOptimization | None] = lambda: None,
                 poll: float = JOB_POLL_SECONDS) -> None:
        self.settings = settings
        self.db = db
        self.holds_lease = holds_lease
        self.clock = clock
        self.auto_settings = auto_settings
        self.poll = poll
        self.owner = f"jobs:{os.getpid()}:{id(self):x}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="personalize-jobs", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.poll):
            try:
                self.tick()
            except Exception as error:  # noqa: BLE001 - keep running after a transient database error
                if not self.db.health.failed(error):
                    log.exception("job runner: will retry")

    def tick(self) -> str | None:
        """One look: fail stale jobs, create a due automatic evaluation, run the oldest waiting job.
        Returns the status of the job run, if any."""
        if not self.holds_lease():
            return None
        now = self.clock()
        config = self.auto_settings()
        with self.db.read() as session:  # the usual case, nothing to do, costs one read (no write lock)
            waiting = session.execute(select(Job.kind).where(Job.status.in_(("NotSubmitted", "Running"))).limit(1)).first()
            due = self._auto_window(session, now, config)
        if waiting is None and due is None:
            return None
        with self.db.write() as session:
            fail_stale(session, now)
            if due is not None:
                self._create_auto(session, now, due)
            claimed = claim_next(session, self.owner, now)
        if claimed is None:
            return None
        return self._run_in_worker(*claimed)

    def _auto_window(self, session: Session, now: float, config: AutoOptimization | None) -> tuple[float, float] | None:
        if config is None or not config.enabled:
            return None
        last = session.execute(select(func.max(Job.created_at)).where(Job.kind == EVALUATION, Job.job_type == "Auto")).scalar()
        return next_auto_window(now, config, last)

    def _create_auto(self, session: Session, now: float, window: tuple[float, float]) -> None:
        job_id = f"auto-{int(now)}"
        if session.get(Job, (EVALUATION, job_id)) is None:
            create_job(session, EVALUATION, job_id, "Automatic policy optimization", window[0], window[1],
                       {"policies": [], "enablePolicyOptimization": True}, now, job_type="Auto")

    def _run_in_worker(self, kind: str, job_id: str) -> str:
        payload = json.dumps({"settings": dataclasses.asdict(self.settings), "kind": kind, "id": job_id,
                              "owner": self.owner})
        errors = tempfile.TemporaryFile()  # not a pipe: a chatty worker must never block on a full one
        process = subprocess.Popen([sys.executable, "-m", "personalize.evaluation.worker"], stdin=subprocess.PIPE,
                                   stdout=subprocess.DEVNULL, stderr=errors)
        self._process = process
        assert process.stdin is not None
        process.stdin.write(payload.encode())
        process.stdin.close()
        beat = time.monotonic()
        while True:
            try:
                process.wait(0.5)
                break
            except subprocess.TimeoutExpired:
                pass
            if self._stop.is_set():
                break
            if time.monotonic() - beat >= HEARTBEAT_SECONDS:
                beat = time.monotonic()
                try:
                    _beat(self.db, kind, job_id, self.owner, self.clock())
                except JobGone:  # deleted while it ran
                    process.terminate()
        self._process = None
        if self._stop.is_set():  # shutdown: stop the worker, the job waits for the next runner
            if process.poll() is None:
                process.terminate()
                process.wait(10)
            errors.close()
            with self.db.write() as session:
                session.execute(update(Job).where(Job.kind == kind, Job.id == job_id, Job.owner == self.owner,
                                                  Job.status == "Running")
                                .values(status="NotSubmitted", owner=None, progress=0.0))
            return "NotSubmitted"
        errors.seek(0)
        stderr = errors.read().decode(errors="replace")
        errors.close()
        with self.db.write() as session:
            job = get_job(session, kind, job_id)
            if job is None:
                return "Deleted"
            if job.status == "Running" and job.owner == self.owner:
                tail = stderr.strip().splitlines()[-1:] or [f"exit status {process.returncode}"]
                job.status, job.description = "Failed", f"the worker process stopped: {tail[0]}"
            return job.status
