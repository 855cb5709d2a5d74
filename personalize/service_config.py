"""The service configuration (Personalizer's ``/configurations/service``): settings that change live.

The environment/TOML settings give the initial values; the first ``PUT /configurations/service``
(or ``personalize config set``) stores a row in the database, and from then on that row wins.
Every process (servers, ``personalize learn``) runs a :class:`LiveConfig` that checks the row's
version every ``config_poll_interval`` seconds (one small query, never per Rank) and swaps in
the new values: readers take ``live.current`` once per call, so a call sees one whole
configuration, never half of an update.

What each field does here (docs/personalizer-compat.md has the table): ``rewardWaitTime``
applies to events ranked (or activated) after the change; ``defaultReward`` and
``rewardAggregation`` to the joins the learner performs after it; ``explorationPercentage`` to
the next Rank (the uniform floor is applied at predict time); ``learningMode`` to the next Rank.
``modelExportFrequency``, ``logRetentionDays``, ``modelRetrainDays`` and the auto-optimization
fields are validated, stored and returned, but nothing acts on them yet.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from personalize.api.errors import ApiError
from personalize.catalog import parse_time
from personalize.config import LEARNING_MODES, Settings
from personalize.db import Database
from personalize.db_health import OUTAGE_BACKOFF
from personalize.models import ServiceConfigurationRow

__all__ = ["ServiceConfig", "LiveConfig", "parse_duration", "format_duration", "parse_update", "load", "save",
           "API_FIELDS", "MAX_DURATION_SECONDS"]

log = logging.getLogger(__name__)

#: The durations accepted: ISO 8601 days, hours, minutes and seconds (fractions of a second to the microsecond),
#: each at most 4 digits, at least one of them. The schema states the same pattern (ECMA regex, no named groups).
DURATION_PATTERN = (r"^P(?:\d{1,4}D(?:T(?:\d{1,4}H(?:\d{1,4}M)?(?:\d{1,4}(?:\.\d{1,6})?S)?|\d{1,4}M(?:\d{1,4}(?:\.\d{1,6})?S)?"
                    r"|\d{1,4}(?:\.\d{1,6})?S))?|T(?:\d{1,4}H(?:\d{1,4}M)?(?:\d{1,4}(?:\.\d{1,6})?S)?"
                    r"|\d{1,4}M(?:\d{1,4}(?:\.\d{1,6})?S)?|\d{1,4}(?:\.\d{1,6})?S))$")
_SHAPE = re.compile(DURATION_PATTERN)
_PARTS = re.compile(r"^P(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+)(?:\.(?P<f>\d+))?S)?)?$")
_UNITS = (("D", 86_400), ("H", 3_600), ("M", 60))
#: The longest duration the pattern allows (9999 days, hours, minutes and seconds): about 28.5 years.
MAX_DURATION_SECONDS = 9999 * (86_400 + 3_600 + 60 + 1) + 0.999999


def parse_duration(text: Any, field: str) -> float:
    """Seconds of an ISO 8601 duration such as ``PT10M``, ``PT24H`` or ``P1DT12H``; a 400 naming ``field`` otherwise.

    Years, months and weeks are refused (years and months have no fixed length: write days)."""
    if not isinstance(text, str) or not _SHAPE.match(text):
        raise ApiError(400, "InvalidServiceConfiguration", f"{field} must be an ISO 8601 duration in days, hours, minutes "
                       f"and seconds (at most 4 digits each), such as PT30S, PT10M, PT4H or P1D; not {text!r}.", field)
    parts = _PARTS.match(text)
    assert parts is not None  # every text of the pattern has this shape
    micro = int((parts["f"] or "").ljust(6, "0"))
    whole = sum(int(parts[key.lower()] or 0) * unit for key, unit in _UNITS) + int(parts["s"] or 0)
    return whole + micro / 1e6


def format_duration(seconds: float) -> str:
    """The ISO 8601 text of a duration (to the microsecond): 600 -> ``PT10M``, 90000 -> ``P1DT1H``, 0 -> ``PT0S``.

    Days, hours and minutes as usual; a duration beyond 9999 days keeps the excess in hours, then minutes,
    then seconds, so the text always matches DURATION_PATTERN (a GET body can be sent back as it is)."""
    rest = round(seconds * 1e6)
    out = "P"
    time = ""
    for key, unit in _UNITS:
        count = min(9999, rest // (unit * 1_000_000))
        rest -= count * unit * 1_000_000
        if count:
            if key == "D":
                out += f"{count}D"
            else:
                time += f"{count}{key}"
    whole, micro = divmod(rest, 1_000_000)
    if whole or micro or (not time and out == "P"):
        time += f"{whole}" + (f".{micro:06d}".rstrip("0") if micro else "") + "S"
    return out + ("T" + time if time else "")


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, tz=timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class ServiceConfig:
    """One whole configuration; durations in seconds, times in UNIX seconds."""

    reward_wait_time: float
    default_reward: float
    reward_aggregation: str
    exploration: float
    learning_mode: str
    model_export_frequency: float
    log_retention_days: int
    model_retrain_days: int
    auto_optimization_enabled: bool = False
    auto_optimization_frequency: float | None = None
    auto_optimization_start_date: float | None = None
    last_edit: float | None = None
    version: int = 0  # 0: the settings' values (nothing stored yet); else the database row's version

    @classmethod
    def from_settings(cls, settings: Settings) -> "ServiceConfig":
        return cls(
            reward_wait_time=settings.reward_wait_time, default_reward=settings.default_reward,
            reward_aggregation=settings.reward_aggregation, exploration=settings.exploration,
            learning_mode=settings.learning_mode, model_export_frequency=settings.learner_interval,
            log_retention_days=settings.log_retention_days, model_retrain_days=settings.model_retrain_days,
        )

    def values(self) -> dict[str, Any]:
        """What the database row stores (everything but the version)."""
        out = asdict(self)
        del out["version"]
        return out

    @classmethod
    def from_values(cls, values: Mapping[str, Any], version: int, defaults: "ServiceConfig") -> "ServiceConfig":
        """A stored row; a field it lacks (stored by an older version) keeps the settings' value."""
        known = {k: v for k, v in values.items() if k in defaults.values()}
        return replace(defaults, **known, version=version)

    def to_api(self) -> dict[str, Any]:
        """Personalizer's ServiceConfiguration body."""
        body: dict[str, Any] = {
            "rewardWaitTime": format_duration(self.reward_wait_time),
            "defaultReward": self.default_reward,
            "rewardAggregation": self.reward_aggregation,
            "explorationPercentage": self.exploration,
            "modelExportFrequency": format_duration(self.model_export_frequency),
            "logRetentionDays": self.log_retention_days,
            "modelRetrainDays": self.model_retrain_days,
            "learningMode": self.learning_mode,
            "isAutoOptimizationEnabled": self.auto_optimization_enabled,
        }
        if self.auto_optimization_frequency is not None:
            body["autoOptimizationFrequency"] = format_duration(self.auto_optimization_frequency)
        if self.auto_optimization_start_date is not None:
            body["autoOptimizationStartDate"] = _iso(self.auto_optimization_start_date)
        if self.last_edit is not None:
            body["lastConfigurationEditDate"] = _iso(self.last_edit)
        return body

    def summary(self) -> dict[str, Any]:
        """The live learning settings that status reports (next to the static ones)."""
        return {"exploration": self.exploration, "rewardWaitTime": self.reward_wait_time,
                "rewardAggregation": self.reward_aggregation, "defaultReward": self.default_reward,
                "learningMode": self.learning_mode, "configurationVersion": self.version}


#: The body's fields (Personalizer's names). Read-only ones a client may send back unchanged from a GET:
#: lastConfigurationEditDate (the server sets it) and latestApprenticeModeMetrics (the server computes them).
API_FIELDS = (
    "rewardWaitTime", "defaultReward", "rewardAggregation", "explorationPercentage", "modelExportFrequency",
    "logRetentionDays", "modelRetrainDays", "learningMode", "isAutoOptimizationEnabled", "autoOptimizationFrequency",
    "autoOptimizationStartDate", "lastConfigurationEditDate", "latestApprenticeModeMetrics", "logMirrorEnabled",
    "logMirrorSasUri",
)


def parse_update(body: Mapping[str, Any], current: ServiceConfig, settings: Settings, now: float) -> ServiceConfig:
    """The configuration a PUT body asks for (already checked against the ServiceConfiguration schema:
    fields, types, ranges). Optional fields the body leaves out keep their current values.
    Every error is a 400 naming the field and the fix."""

    def bad(field: str, message: str, code: str = "InvalidServiceConfiguration") -> ApiError:
        return ApiError(400, code, message, field)

    wait = parse_duration(body["rewardWaitTime"], "rewardWaitTime")
    export = parse_duration(body["modelExportFrequency"], "modelExportFrequency")
    default_reward = float(body["defaultReward"])
    if not settings.reward_min <= default_reward <= settings.reward_max:
        raise bad("defaultReward", f"defaultReward must lie within the reward range [{settings.reward_min}, "
                  f"{settings.reward_max}] (PERSONALIZE_REWARD_MIN/MAX), not {default_reward}.")
    retention = int(body["logRetentionDays"])
    minimum_days = math.ceil(wait / 86400) + 1
    if retention != -1 and retention < minimum_days:
        raise bad("logRetentionDays", f"logRetentionDays must be -1 (keep forever) or at least the reward wait time "
                  f"plus one day, rounded up: {minimum_days}; not {retention}.", "InvalidLogRetentionDays")
    retrain = int(body["modelRetrainDays"])
    if retention != -1 and retrain > retention:
        raise bad("modelRetrainDays", f"modelRetrainDays must be between 0 and logRetentionDays ({retention}), not "
                  f"{retrain}.", "InvalidModelRetrainDays")
    if body.get("logMirrorEnabled"):
        raise bad("logMirrorEnabled", "logMirrorEnabled: log mirroring to Azure storage is not supported; send false "
                  "or leave it out, and copy the log with `personalize logs export` instead.")
    if body.get("logMirrorSasUri"):
        raise bad("logMirrorSasUri", "logMirrorSasUri: log mirroring to Azure storage is not supported; leave it out.")
    frequency = current.auto_optimization_frequency
    if body.get("autoOptimizationFrequency") is not None:
        frequency = parse_duration(body["autoOptimizationFrequency"], "autoOptimizationFrequency")
    start = current.auto_optimization_start_date
    if body.get("autoOptimizationStartDate") is not None:
        try:
            start = parse_time(body["autoOptimizationStartDate"])
        except ValueError:
            raise bad("autoOptimizationStartDate", "autoOptimizationStartDate must be an ISO 8601 date-time such as "
                      f"2026-12-01T00:00:00Z, not {body['autoOptimizationStartDate']!r}.") from None
    mode = body.get("learningMode") or current.learning_mode
    enabled = body.get("isAutoOptimizationEnabled")
    return ServiceConfig(
        reward_wait_time=wait, default_reward=default_reward, reward_aggregation=body["rewardAggregation"],
        exploration=float(body["explorationPercentage"]), learning_mode=mode, model_export_frequency=export,
        log_retention_days=retention, model_retrain_days=retrain,
        auto_optimization_enabled=current.auto_optimization_enabled if enabled is None else bool(enabled),
        auto_optimization_frequency=frequency, auto_optimization_start_date=start, last_edit=now,
        version=current.version,
    )


def schema(settings: Settings) -> dict[str, Any]:
    """The JSON Schema of a PUT body (personalize/api/schemas.py serves it as ServiceConfiguration). Two rules
    join fields and are checked by parse_update: logRetentionDays is -1 or at least the reward wait plus one
    day, and modelRetrainDays is at most logRetentionDays."""
    duration = {"type": "string", "pattern": DURATION_PATTERN,
                "description": "An ISO 8601 duration in days, hours, minutes and seconds (at most 4 digits each), e.g. "
                               "PT30S, PT10M, PT24H, P1DT12H (no weeks, years or months)."}
    return {
        "type": "object", "additionalProperties": False, "x-error-code": "InvalidServiceConfiguration",
        "required": ["rewardWaitTime", "defaultReward", "rewardAggregation", "explorationPercentage",
                     "modelExportFrequency", "logRetentionDays", "modelRetrainDays"],
        "properties": {
            "rewardWaitTime": {**duration, "description": "How long an event waits for rewards (ISO 8601 duration, "
                                                          "e.g. PT10M); applies to events ranked after the change."},
            "defaultReward": {"type": "number", "minimum": settings.reward_min, "maximum": settings.reward_max,
                              "description": "The reward of events that get none within the wait; within the reward "
                                             "range (PERSONALIZE_REWARD_MIN/MAX)."},
            "rewardAggregation": {"enum": ["earliest", "sum"], "description": "'earliest' or 'sum'."},
            "explorationPercentage": {"type": "number", "minimum": 0, "maximum": 1,
                                      "description": "The uniform exploration floor, 0 to 1 (PERSONALIZE_EXPLORATION)."},
            "modelExportFrequency": {**duration, "description": "Stored and returned; the served model follows "
                                                                "every learner step whatever its value."},
            "logRetentionDays": {"type": "integer", "minimum": -1, "maximum": 2147483647,
                                 "description": "-1 (keep forever) or at least the reward wait plus one day; stored, "
                                                "no job deletes old events yet."},
            "modelRetrainDays": {"type": "integer", "minimum": 0, "maximum": 2147483647,
                                 "description": "0 to logRetentionDays; stored, nothing retrains from it yet."},
            "learningMode": {"enum": list(LEARNING_MODES), "description": "Online, Apprentice or LoggingOnly; left out: "
                                                                         "unchanged."},
            "isAutoOptimizationEnabled": {"type": ["boolean", "null"], "description": "Stored; not acted on yet."},
            "autoOptimizationFrequency": {**duration, "type": ["string", "null"], "description": "Stored; not acted on yet."},
            "autoOptimizationStartDate": {"type": ["string", "null"], "format": "date-time",
                                          "description": "ISO 8601 date-time; stored, not acted on yet."},
            "lastConfigurationEditDate": {"type": ["string", "null"], "description": "Read-only: set by the server; "
                                                                                     "ignored when sent."},
            "latestApprenticeModeMetrics": {"type": ["object", "null"], "description": "Read-only: ignored when sent."},
            "logMirrorEnabled": {"enum": [False, None], "description": "Log mirroring to Azure storage is not "
                                                                       "supported: false or absent."},
            "logMirrorSasUri": {"type": ["string", "null"], "maxLength": 0,
                                "description": "Log mirroring to Azure storage is not supported: absent or empty."},
        },
        "description": "Personalizer's service configuration (2022-09-01-preview).",
    }


# -- storage -------------------------------------------------------------------------------------
_VERSION = select(ServiceConfigurationRow.version).where(ServiceConfigurationRow.id == 1)


def stored_version(session: Session) -> int:
    """The stored row's version (0: none yet): the cheap query every process polls."""
    return session.execute(_VERSION).scalar() or 0


def load(session: Session, settings: Settings) -> ServiceConfig:
    """The configuration in force: the stored row, or the settings' values when there is none."""
    defaults = ServiceConfig.from_settings(settings)
    row = session.execute(select(ServiceConfigurationRow).where(ServiceConfigurationRow.id == 1)).scalar_one_or_none()
    if row is None:
        return defaults
    return ServiceConfig.from_values(row.values, row.version, defaults)


def save(session: Session, config: ServiceConfig, now: float) -> ServiceConfig:
    """Store ``config`` as the new configuration (version + 1); returns it with its version."""
    row = session.execute(
        select(ServiceConfigurationRow).where(ServiceConfigurationRow.id == 1).with_for_update()
    ).scalar_one_or_none()
    version = (row.version if row is not None else 0) + 1
    if row is None:
        session.add(ServiceConfigurationRow(id=1, version=version, updated_at=now, values=config.values()))
    else:
        session.execute(update(ServiceConfigurationRow).where(ServiceConfigurationRow.id == 1)
                        .values(version=version, updated_at=now, values=config.values()))
    return replace(config, version=version)


class LiveConfig:
    """The configuration in force in this process, kept current by a polling thread.

    ``current`` is replaced whole (one attribute assignment), so readers need no lock. ``on_change``
    callbacks run in the polling thread after each swap (e.g. the ranker's exploration). It starts with
    the settings' values: ``refresh()`` (or ``start()``) reads the stored ones."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self.current: ServiceConfig = ServiceConfig.from_settings(settings)
        self._lock = threading.Lock()  # apply() runs in the poll thread and in request threads
        self._listeners: list[Callable[[ServiceConfig], None]] = []
        self._tick: list[Callable[[], None]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def on_change(self, listener: Callable[[ServiceConfig], None]) -> None:
        self._listeners.append(listener)

    def on_poll(self, task: Callable[[], None]) -> None:
        """Run ``task`` on every poll too (e.g. look for an imported model), in the same thread."""
        self._tick.append(task)

    def refresh(self) -> bool:
        """Load the stored configuration if its version changed; True when it did."""
        with self.db.read() as session:
            if stored_version(session) <= self.current.version:
                return False
            config = load(session, self.settings)
        self.apply(config)
        return True

    def apply(self, config: ServiceConfig) -> None:
        """Use ``config`` now (after this process stored it, or the poll found it)."""
        with self._lock:
            if config.version < self.current.version:
                return
            self.current = config
            for listener in self._listeners:
                listener(config)

    def start(self) -> None:
        self.refresh()
        self._thread = threading.Thread(target=self._run, name="personalize-config-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self.settings.config_poll_interval):
            try:
                self.refresh()
                for task in self._tick:
                    task()
            except Exception as error:
                if self.db.health.failed(error):  # an outage is logged once, by db_health
                    self._stop.wait(OUTAGE_BACKOFF)
                else:
                    log.exception("could not check the service configuration; will retry")
