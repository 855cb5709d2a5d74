"""Prometheus metrics: counters kept by every process, read together by ``GET /metrics``.

Several gunicorn workers and a separate ``personalize learn`` process each count their own
calls. prometheus_client's multiprocess mode keeps each process's values in small memory-mapped
files in one folder (``PROMETHEUS_MULTIPROC_DIR``); a scrape, in whichever worker receives it,
adds them up. ``personalize serve`` points that variable at ``metrics_dir`` (default
``<data_dir>/metrics``) before the workers fork, removes the files of processes that are gone,
and marks each exited worker dead. Without the variable (tests, the simulator), each app keeps
its metrics in its own registry.

Nothing here touches the database on the Rank/Reward path: a counter increment is a locked write
to a memory-mapped file. The two values that live in the database (the newest model version and
the learner lag) are read at scrape time, with one query that uses the join index.
"""

from __future__ import annotations

import glob
import os
import re
import threading
from pathlib import Path
from typing import Any, Callable, Iterable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from sqlalchemy import Connection, text

from personalize.config import Settings

__all__ = ["Metrics", "MULTIPROC_ENV", "CONTENT_TYPE", "metrics_dir", "prepare_dir", "process_exited",
           "render", "store_gauges", "error_counts"]

#: The variable prometheus_client reads to turn multiprocess mode on.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: The Prometheus text exposition format, as prometheus_client writes it.
CONTENT_TYPE = CONTENT_TYPE_LATEST
#: Request-duration buckets, seconds: Rank is a few milliseconds, a generator refit can take seconds.
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: HTTP methods labelled as themselves; any other is "other" (a client must not mint label values).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


def metrics_dir(settings: Settings) -> Path:
    """Where this host's processes keep their metric files."""
    return Path(settings.metrics_dir or Path(settings.data_dir) / "metrics").resolve()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def prepare_dir(settings: Settings, clean: bool) -> Path:
    """Create the metrics folder and turn multiprocess mode on for this process and its children; call
    before any metric exists (``serve``'s master before the workers fork, ``learn``). ``clean`` (serve):
    drop the files of processes that no longer run, so the sums start afresh, and every live gauge; a
    learner started earlier on this host keeps its counters."""
    path = metrics_dir(settings)
    path.mkdir(parents=True, exist_ok=True)
    if clean:
        for file in glob.glob(str(path / "*.db")):
            match = re.search(r"_(\d+)\.db$", file)
            # Live gauges are written by server workers only, and none of ours runs yet: a file left by a
            # process whose id another process now has (containers reuse ids) must not pin the minimum.
            if match is None or not _alive(int(match.group(1))) or Path(file).name.startswith("gauge_live"):
                os.remove(file)
    os.environ[MULTIPROC_ENV] = str(path)
    if not getattr(values.ValueClass, "_multiprocess", False):
        # prometheus_client chose its value class when first imported; choose again now that the variable is set
        values.ValueClass = values.get_value_class()
    return path


def process_exited(pid: int) -> None:
    """A worker or learner process ended: its live gauges stop counting (its counters stay in the sums)."""
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        mark_process_dead(pid, path)


def _multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


class Metrics:
    """The metrics one process updates. In multiprocess mode there is one instance per process (two
    objects writing the same metric would overwrite each other's file entries): use ``Metrics.get()``."""

    _process_wide: tuple[int, "Metrics"] | None = None

    @classmethod
    def get(cls) -> "Metrics":
        """This process's metrics (multiprocess mode), or a fresh set with its own registry."""
        if not _multiprocess():
            return cls(CollectorRegistry(auto_describe=True))
        pid = os.getpid()
        if cls._process_wide is None or cls._process_wide[0] != pid:
            cls._process_wide = (pid, cls(None))
        return cls._process_wide[1]

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.registry = registry
        r = {"registry": registry}
        self.ranks = Counter("personalize_ranks", "Rank calls answered, by where the actions came from "
                             "(request: sent by the client; generated: Rank by userId).", ["candidates"], **r)
        self.explored = Counter("personalize_explored_ranks", "Rank calls whose chosen action was not the "
                                "greedy one (not the highest-probability action): exploration.", **r)
        self.rewards = Counter("personalize_rewards", "Reward calls accepted.", **r)
        self.reward_value = Gauge("personalize_rewards_value", "Sum of the values of accepted Reward calls "
                                  "(a gauge: rewards may be negative); with personalize_rewards_total, the mean "
                                  "reward received.", multiprocess_mode="sum", **r)
        self.learned = Counter("personalize_events_learned", "Events learned (with their reward, or the default "
                               "reward when none came in time).", **r)
        self.learned_reward = Gauge("personalize_events_learned_reward", "Sum of the rewards of learned events "
                                    "(default reward included); with personalize_events_learned_total, the "
                                    "online policy's mean reward.", multiprocess_mode="sum", **r)
        self.snapshots = Counter("personalize_snapshots_published", "Model snapshots the learner published.", **r)
        self._serving: Gauge | None = None  # made by the first server call: a learner process must not count as 0
        self._serving_lock = threading.Lock()
        self.duration = Histogram("personalize_request_duration_seconds", "Time to answer HTTP requests, by "
                                  "route (the URL rule, e.g. /personalizer/v1.0/events/<event_id:event_id>/reward), "
                                  "method and status.", ["route", "method", "status"], buckets=DURATION_BUCKETS, **r)
        self.errors = Counter("personalize_errors", "Answers with a 4xx or 5xx status, by route, status and "
                              "error code.", ["route", "status", "code"], **r)
        self._rank_request = self.ranks.labels("request")
        self._rank_generated = self.ranks.labels("generated")
        self._children: dict[tuple[str, str, str], Any] = {}

    # -- the hot path: no database, no allocation beyond a label lookup --------------
    def ranked(self, generated: bool, explored: bool) -> None:
        (self._rank_generated if generated else self._rank_request).inc()
        if explored:
            self.explored.inc()

    def rewarded(self, value: float) -> None:
        self.rewards.inc()
        self.reward_value.inc(value)

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method if method in METHODS else "other", str(status))
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.duration.labels(*key)
        child.observe(seconds)

    def error(self, route: str, status: int, code: str) -> None:
        self.errors.labels(route, str(status), code).inc()

    # -- learner and ranker --------------------------------------------------------
    def learned_batch(self, rewards: Iterable[float]) -> None:
        count = total = 0.0
        for reward in rewards:
            count += 1
            total += reward
        self.learned.inc(count)
        self.learned_reward.inc(total)
        self.snapshots.inc()

    def serving_version(self, version: int) -> None:
        """The model version this server process ranks with."""
        with self._serving_lock:
            if self._serving is None:
                self._serving = Gauge(
                    "personalize_model_serving_version", "Oldest model version a live server process is ranking "
                    "with (behind personalize_model_version: a worker has not loaded the newest snapshot yet).",
                    multiprocess_mode="livemin", registry=self.registry)
            self._serving.set(version)


#: One statement, two index lookups: the newest snapshot's version (primary key) and the oldest
#: ready, unclaimed event (ix_events_join: claimed_version, ready_at).
_STORE_GAUGES = text(
    "SELECT (SELECT max(version) FROM model_snapshots), "
    "(SELECT min(ready_at) FROM events WHERE claimed_version IS NULL AND ready_at IS NOT NULL AND ready_at <= :now)"
)


def store_gauges(connection: Connection, now: float) -> tuple[int, float]:
    """(newest published model version, learner lag in seconds: how long the oldest event that is ready
    to learn has waited; 0 when none waits)."""
    version, oldest_ready = connection.execute(_STORE_GAUGES, {"now": now}).one()
    return int(version or 0), max(0.0, now - oldest_ready) if oldest_ready is not None else 0.0


class _StoreCollector:
    """The gauges read from the database at scrape time (``read`` returns None while it is unreachable)."""

    def __init__(self, read: Callable[[], tuple[int, float] | None]) -> None:
        self.read = read

    def collect(self) -> Iterable[Metric]:
        gauges = self.read()
        yield GaugeMetricFamily("personalize_database_up", "1 when the scrape could read the database, else 0.",
                                0 if gauges is None else 1)
        if gauges is None:
            return
        version, lag = gauges
        yield GaugeMetricFamily("personalize_model_version", "Newest model version the learner published.", version)
        yield GaugeMetricFamily("personalize_learner_lag_seconds", "Age of the oldest event that is ready to learn "
                                "but not learned yet (0 when the learner is caught up; it grows while no "
                                "learner runs).", lag)


class _Sources:
    def __init__(self, *sources: Any) -> None:
        self.sources = sources

    def collect(self) -> Iterable[Metric]:
        for source in self.sources:
            yield from source.collect()


def _processes(metrics: Metrics) -> Any:
    """What every process on this host counted (multiprocess files), or this app's own registry."""
    if metrics.registry is not None:
        return metrics.registry
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    return registry


def render(metrics: Metrics, read_store: Callable[[], tuple[int, float] | None]) -> bytes:
    """The text exposition of every process's metrics plus the database gauges."""
    return generate_latest(_Sources(_processes(metrics), _StoreCollector(read_store)))  # type: ignore[arg-type]


def error_counts(metrics: Metrics) -> list[dict[str, Any]]:
    """Error answers by route, status and code, summed over this host's processes, most frequent first."""
    counts = [{**sample.labels, "count": int(sample.value)}
              for family in _processes(metrics).collect() if family.name == "personalize_errors"
              for sample in family.samples if sample.name == "personalize_errors_total" and sample.value]
    return sorted(counts, key=lambda entry: -entry["count"])
