"""The dashboard's numbers: is it learning, is it better than a baseline, what does it show and explore.

Computed when the page is asked for (never on Rank/Reward), from a bounded window: the newest
``WINDOW_EVENTS`` events of the last ``WINDOW_SECONDS`` (read through ``ix_events_created``), the
provenance of the newest ``GENERATOR_EVENTS`` Rank-by-userId events among them, and one row each
of the snapshot and lease tables. Each process keeps the result ``CACHE_SECONDS``, so a dashboard
left open, or opened by many people, costs one set of queries per process that often.

Reward over time: the online policy's value is the mean reward of its learned events (they were
chosen by it: on-policy). The baseline is the policy that always shows the first action of the
request (Personalizer's baseline; for Rank by userId, the generators' first candidate), estimated
off-policy from the same events with IPS (personalize/evaluation/estimators.py): unbiased because
every logged probability is the exact probability of the chosen action. Intervals are percentile
bootstrap intervals.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import orjson
from sqlalchemy import Connection, bindparam, select, text

from personalize.evaluation.estimators import Logged, bootstrap_ci, estimate
from personalize.ops.metrics import store_gauges
from personalize.ranker import explored

__all__ = ["collect", "ago", "DashboardCache", "WINDOW_EVENTS", "WINDOW_SECONDS", "GENERATOR_EVENTS", "BUCKETS"]

#: Newest events the reward, exploration and top-action panels read.
WINDOW_EVENTS = 10_000
#: ...ranked within this many seconds (7 days).
WINDOW_SECONDS = 7 * 24 * 3600.0
#: Newest Rank-by-userId events whose candidates' provenance the generator panel reads (kilobytes each).
GENERATOR_EVENTS = 500
#: Time buckets of the charts.
BUCKETS = 12
#: Seconds a process reuses what it computed.
CACHE_SECONDS = 10.0
#: Bootstrap resamples per interval.
BOOTSTRAP_REPS = 200
#: Actions and errors listed.
TOP = 10
#: A learner lag above this many seconds is shown as "behind".
LAG_WARNING_SECONDS = 60.0

_SNAPSHOT = text("SELECT version, created_at, events_learned FROM model_snapshots ORDER BY version DESC LIMIT 1")
_LEASE = text("SELECT expires_at FROM learner_lease WHERE id = 1")
_WINDOW = text(
    "SELECT seq, created_at, action_ids, chosen_index, probability, probabilities, learned_reward, user_id "
    "FROM events WHERE created_at >= :since ORDER BY created_at DESC LIMIT :limit"
)
_PROVENANCE = text("SELECT seq, extra FROM events WHERE seq IN :seqs").bindparams(bindparam("seqs", expanding=True))


def _json(value: Any) -> Any:
    """A JSON column: text on SQLite (read with text()), already decoded on PostgreSQL."""
    return orjson.loads(value) if isinstance(value, (str, bytes)) else value


@dataclass(frozen=True)
class _Row:
    seq: int
    created_at: float
    chosen: str
    chosen_index: int
    probability: float
    explored: bool
    reward: float | None  # learned reward; None while not learned
    user: bool


def _rows(connection: Connection, now: float) -> list[_Row]:
    rows = []
    for seq, created_at, action_ids, chosen_index, probability, probabilities, reward, user_id in connection.execute(
        _WINDOW, {"since": now - WINDOW_SECONDS, "limit": WINDOW_EVENTS}
    ):
        action_ids, probabilities = _json(action_ids), _json(probabilities)
        rows.append(_Row(seq, created_at, str(action_ids[chosen_index]), chosen_index, probability,
                         explored(probability, probabilities), reward, user_id is not None))
    rows.reverse()  # oldest first
    return rows


def _estimate(rewards: np.ndarray, mu: np.ndarray, pi: np.ndarray) -> dict[str, Any]:
    """IPS value of the policy ``pi`` with its bootstrap interval."""
    zeros = np.zeros(len(rewards))
    logged = Logged(rewards, mu, pi, zeros, zeros)
    value = estimate(logged, ("ips",))["ips"]
    low, high = bootstrap_ci(logged, ("ips",), reps=BOOTSTRAP_REPS)["ips"] if len(rewards) > 1 else (value, value)
    return {"value": value, "low": low, "high": high, "events": len(rewards)}


def _policies(rows: list[_Row]) -> dict[str, dict[str, Any]]:
    rewards = np.array([r.reward for r in rows], dtype=float)
    mu = np.array([r.probability for r in rows], dtype=float)
    first = np.array([1.0 if r.chosen_index == 0 else 0.0 for r in rows])
    return {"online": _estimate(rewards, mu, mu), "baseline": _estimate(rewards, mu, first)}


def _buckets(rows: list[_Row], start: float, end: float) -> list[list[_Row]]:
    width = (end - start) / BUCKETS or 1.0
    buckets: list[list[_Row]] = [[] for _ in range(BUCKETS)]
    for row in rows:
        buckets[min(int((row.created_at - start) / width), BUCKETS - 1)].append(row)
    return buckets


def _reward(rows: list[_Row]) -> dict[str, Any]:
    learned = [r for r in rows if r.reward is not None]
    out: dict[str, Any] = {"learnedEvents": len(learned), "overall": None, "series": []}
    if not learned:
        return out
    out["overall"] = _policies(learned)
    start, end = learned[0].created_at, learned[-1].created_at
    width = (end - start) / BUCKETS or 1.0
    for i, bucket in enumerate(_buckets(learned, start, end)):
        if bucket:
            out["series"].append({"time": start + (i + 0.5) * width, **_policies(bucket)})
    return out


def _exploration(rows: list[_Row]) -> dict[str, Any]:
    out: dict[str, Any] = {"share": None, "events": len(rows), "series": []}
    if not rows:
        return out
    out["share"] = sum(r.explored for r in rows) / len(rows)
    start, end = rows[0].created_at, rows[-1].created_at
    width = (end - start) / BUCKETS or 1.0
    for i, bucket in enumerate(_buckets(rows, start, end)):
        if bucket:
            out["series"].append({"time": start + (i + 0.5) * width, "share": sum(r.explored for r in bucket) / len(bucket),
                                  "ranks": len(bucket)})
    return out


def _top_actions(rows: list[_Row]) -> list[dict[str, Any]]:
    chosen = Counter(r.chosen for r in rows)
    rewards: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        if r.reward is not None:
            rewards[r.chosen].append(r.reward)
    return [{"id": action, "chosen": count, "share": count / len(rows),
             "meanReward": float(np.mean(rewards[action])) if rewards[action] else None}
            for action, count in chosen.most_common(TOP)]


def _generators(connection: Connection, rows: list[_Row]) -> dict[str, Any]:
    """Which generators proposed the chosen item of the newest Rank-by-userId answers (an item several
    generators proposed counts for each; components inside a blend are not counted twice)."""
    users = [r for r in rows if r.user][-GENERATOR_EVENTS:]
    if not users:
        return {"events": 0, "mix": []}
    by_seq = {r.seq: r for r in users}
    counts: Counter[str] = Counter()
    rewards: dict[str, list[float]] = defaultdict(list)
    events = 0
    for seq, extra in connection.execute(_PROVENANCE, {"seqs": list(by_seq)}):
        provenance = (_json(extra) or {}).get("generators")
        if not provenance:
            continue
        row = by_seq[seq]
        events += 1
        names = {entry["name"] for entry in provenance.get(row.chosen, []) if "via" not in entry}
        for name in names:
            counts[name] += 1
            if row.reward is not None:
                rewards[name].append(row.reward)
    return {"events": events, "mix": [
        {"generator": name, "chosen": count, "share": count / events,
         "meanReward": float(np.mean(rewards[name])) if rewards[name] else None}
        for name, count in counts.most_common()]}


def _learning(connection: Connection, now: float, serving_version: int) -> dict[str, Any]:
    version, lag = store_gauges(connection, now)
    snapshot = connection.execute(_SNAPSHOT).first()
    lease = connection.execute(_LEASE).first()
    running = bool(lease and lease[0] > time.time())  # the lease is renewed on the wall clock
    last = snapshot[1] if snapshot else None
    if not running:
        state, verdict = "bad", "No learner is running: events are not being learned."
    elif lag > LAG_WARNING_SECONDS:
        state, verdict = "warn", f"The learner is {lag:.0f} s behind."
    elif snapshot is None:
        state, verdict = "idle", "Waiting for the first events to learn."
    else:
        state, verdict = "ok", f"Learning: model version {version}, published {ago(now - last)} ago."
    return {"state": state, "verdict": verdict, "modelVersion": version, "servingVersion": serving_version,
            "lastLearnedAt": last, "eventsLearned": snapshot[2] if snapshot else 0, "learnerLagSeconds": lag,
            "learnerRunning": running}


def ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"


#: Offline evaluations and feature-importance jobs shown (the newest).
JOBS_SHOWN = 3


def _jobs(connection: Connection) -> dict[str, Any]:
    """The newest offline evaluations (each policy's expected reward and interval, the optimal policy) and
    feature-importance jobs (their top features), as stored by the job runner (personalize/evaluation/jobs.py)."""
    from personalize.models import Job

    def newest(kind: str) -> list[Any]:
        return list(connection.execute(select(Job).where(Job.kind == kind)
                                       .order_by(Job.created_at.desc(), Job.id).limit(JOBS_SHOWN)).all())

    evaluations = []
    for job in newest("evaluation"):
        result = job.result or {}
        evaluations.append({
            "id": job.id, "name": job.name, "status": job.status, "type": job.job_type, "events": result.get("events"),
            "estimator": result.get("estimator"), "optimalPolicy": result.get("optimalPolicy"),
            "policies": [{"name": row["name"], "source": row.get("policySource"),
                          "value": row["summary"]["expectedReward"], "interval": row["summary"]["confidenceInterval"]}
                         for row in result.get("policies", [])],
        })
    importances = []
    for job in newest("featureImportance"):
        result = job.result or {}
        importances.append({"id": job.id, "name": job.name, "status": job.status, "events": result.get("events"),
                            "features": (result.get("featureScores") or [])[:TOP]})
    return {"evaluations": evaluations, "featureImportances": importances}


def collect(connection: Connection, now: float, serving_version: int, errors: dict[str, Any]) -> dict[str, Any]:
    """Everything the dashboard shows. ``errors``: this host's error counts and this process's latest errors."""
    rows = _rows(connection, now)
    return {
        "generatedAt": now,
        "learning": _learning(connection, now, serving_version),
        "window": {"events": len(rows), "from": rows[0].created_at if rows else None,
                   "to": rows[-1].created_at if rows else None, "maxEvents": WINDOW_EVENTS,
                   "maxSeconds": WINDOW_SECONDS},
        "reward": _reward(rows),
        "exploration": _exploration(rows),
        "topActions": _top_actions(rows),
        "generators": _generators(connection, rows),
        "jobs": _jobs(connection),
        "errors": errors,
    }


class DashboardCache:
    """One computation per ``CACHE_SECONDS`` per process; concurrent requests wait for it instead of repeating it."""

    def __init__(self, compute: Callable[[], dict[str, Any]], seconds: float = CACHE_SECONDS) -> None:
        self.compute = compute
        self.seconds = seconds
        self._lock = threading.Lock()
        self._value: dict[str, Any] | None = None
        self._at = 0.0

    def get(self) -> dict[str, Any]:
        with self._lock:
            if self._value is None or time.monotonic() - self._at >= self.seconds:
                self._value = self.compute()
                self._at = time.monotonic()
            return self._value
