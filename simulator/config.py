"""The simulated world's knobs: one dataclass per concept, read from a TOML file.

Every field has a default and a ``help`` text; ``docs/simulator.md`` documents the same table
(a test keeps them in step). A TOML file sets any subset, one table per section::

    seed = 7
    [choice]
    model = "cascade"
    [service]
    exploration = 0.1
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

__all__ = ["ItemsConfig", "UsersConfig", "ContextConfig", "ChoiceConfig", "DynamicsConfig", "RunConfig",
           "SimConfig", "ConfigError", "load_config", "config_table", "POLICIES"]

#: Every policy the runner knows, in the order they are reported.
POLICIES: tuple[str, ...] = ("uniform", "popularity", "greedy", "default", "test", "linucb", "oracle")


class ConfigError(ValueError):
    """A simulator setting the world cannot use; the message names it and the fix."""


def _k(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class ItemsConfig:
    source: str = _k("movielens", "'movielens' (bundled MovieLens-small movies) or 'synthetic'.")
    count: int = _k(2000, "Number of synthetic items (ignored for movielens).")
    new_fraction: float = _k(0.1, "Share of items (the newest by year) held back and released during the run.")
    new_per_1000: float = _k(20.0, "Held-back items released per 1,000 events (cold start).")
    genre_weights: str = _k("binary", "How clients send an item's genres: 'binary' (each genre 1) or 'unit' (each "
                            "1/sqrt(number of genres), the scale the world's utility uses).")


@dataclass(frozen=True)
class UsersConfig:
    source: str = _k("movielens", "'movielens' (one user per MovieLens rater, preferences fitted on the ratings) "
                     "or 'synthetic' (sampled from the segments fitted on MovieLens).")
    count: int = _k(1000, "Number of synthetic users (ignored for movielens).")
    segments: int = _k(8, "Number of user segments (k-means on the fitted genre preferences).")
    segment_accuracy: float = _k(0.8, "Probability the segment a client sees is the user's true one (else random).")
    prior_strength: float = _k(20.0, "Pseudo-ratings shrinking each user's genre preferences toward the average.")
    taste_factors: int = _k(16, "Dimensions of the hidden per user-item taste no feature reveals.")
    history_length: int = _k(10, "Consumed items in the 'history' features a client sends.")
    profile: bool = _k(True, "Clients send each user's long-term genre 'profile' (the preferences their past ratings "
                       "show, as the user arrived); newcomers who replace leavers have no past ratings, hence none.")
    profile_noise: float = _k(0.0, "Std-dev of the error on each genre of that profile (preferences are standardized, "
                              "std-dev 1); drift makes it stale anyway.")
    consumed_flag: bool = _k(False, "Clients mark each candidate the user already consumed (action feature "
                             "seen.consumed = 1; the world's repeat_penalty applies to those).")


@dataclass(frozen=True)
class ContextConfig:
    strength: float = _k(0.6, "Std-dev of each time-of-day/device genre shift (0 = context does not matter).")
    times: tuple[str, ...] = _k(("morning", "afternoon", "evening", "night"), "Times of day, drawn uniformly.")
    devices: tuple[str, ...] = _k(("mobile", "desktop", "tv"), "Devices.")
    device_weights: tuple[float, ...] = _k((0.5, 0.3, 0.2), "Probability of each device.")


@dataclass(frozen=True)
class ChoiceConfig:
    model: str = _k("position", "'position' (each slot examined with its own probability) or 'cascade' "
                    "(scan down, click the first attractive item, stop).")
    slate_size: int = _k(5, "Top of the ranking the user sees.")
    position_decay: float = _k(1.0, "Position model: slot k (0-based) is examined with probability 1/(k+1)^decay.")
    no_click_utility: float = _k(2.5, "Utility of clicking nothing; click = logit(item utility - this).")
    affinity_scale: float = _k(1.5, "Weight of the user's genre preferences in the item utility.")
    quality_scale: float = _k(0.4, "Weight of the item's quality (shrunk mean rating, standardized).")
    taste_scale: float = _k(0.5, "Weight of the hidden per user-item taste (unlearnable from features).")


@dataclass(frozen=True)
class DynamicsConfig:
    satiation_strength: float = _k(0.5, "Utility lost per unit of recent consumption of the same genres.")
    satiation_decay: float = _k(0.8, "Satiation kept from one visit to the next.")
    repeat_penalty: float = _k(2.0, "Utility lost on an item the user already consumed (boredom).")
    drift: float = _k(0.02, "Std-dev of the random walk of genre preferences per visit (interest drift).")
    churn_after: int = _k(3, "Consecutive sessions without a click before a user may leave.")
    churn_probability: float = _k(0.3, "Probability of leaving after each further bad session; a new user takes "
                                  "the place.")


@dataclass(frozen=True)
class RunConfig:
    mode: str = _k("inline", "'inline' (the runner sends `actions` sampled candidates with each Rank) or 'generators' "
                   "(Rank by userId: the service proposes `actions` candidates from its catalog, loaded at the start "
                   "with the users' past interactions; the oracle picks from the whole released catalog).")
    actions: int = _k(50, "Candidate actions per Rank call (inline: sent; generators: numCandidates).")
    refit_every: int = _k(0, "Generator mode: refit the service's generators (POST /generators/train) every N "
                          "events, so released items and in-run clicks reach the candidates; 0 = never.")
    popularity_bias: float = _k(0.5, "Candidates are drawn with probability proportional to popularity^bias.")
    fresh_share: float = _k(0.1, "Share of candidates drawn from items released in the last 1,000 events.")
    window: int = _k(0, "Events per point of the curves (0 = events/40).")
    policies: tuple[str, ...] = _k(("uniform", "popularity", "greedy", "default", "linucb", "oracle"),
                                   f"Policies compared on the same users; any of {', '.join(POLICIES)} "
                                   "('test' = the service with the [service] settings).")
    learn_every: int = _k(50, "In-process services learn after every Nth Reward call (the service's learn_every; "
                          "1 = after each, slower). 50 = linucb_batch: every learner updates as often.")
    linucb_alpha: float = _k(0.5, "MABWiser LinUCB exploration (alpha).")
    linucb_batch: int = _k(50, "Events between MABWiser refits (each refit inverts a matrix).")
    serendipity_threshold: float = _k(0.5, "An item is unexpected when its genre cosine with the user's "
                                      "history is below this.")
    bubble_window: int = _k(20, "Recent items per user in the filter-bubble genre entropy.")


@dataclass(frozen=True)
class SimConfig:
    """The whole world plus the runner; ``service`` holds Settings overrides for the 'test' policy."""

    seed: int = 0
    items: ItemsConfig = field(default_factory=ItemsConfig)
    users: UsersConfig = field(default_factory=UsersConfig)
    context: ContextConfig = field(default_factory=ContextConfig)
    choice: ChoiceConfig = field(default_factory=ChoiceConfig)
    dynamics: DynamicsConfig = field(default_factory=DynamicsConfig)
    run: RunConfig = field(default_factory=RunConfig)
    service: Mapping[str, Any] = field(default_factory=dict)

    def validate(self) -> "SimConfig":
        checks = [
            (self.items.source in ("movielens", "synthetic"), "items.source must be 'movielens' or 'synthetic'"),
            (self.users.source in ("movielens", "synthetic"), "users.source must be 'movielens' or 'synthetic'"),
            (self.choice.model in ("position", "cascade"), "choice.model must be 'position' or 'cascade'"),
            (self.choice.slate_size >= 1, "choice.slate_size must be at least 1"),
            (self.run.actions >= 2, "run.actions must be at least 2"),
            (self.run.mode in ("inline", "generators"), "run.mode must be 'inline' or 'generators'"),
            (self.items.genre_weights in ("binary", "unit"), "items.genre_weights must be 'binary' or 'unit'"),
            (self.run.refit_every >= 0, "run.refit_every must be >= 0"),
            (self.users.segments >= 1, "users.segments must be at least 1"),
            (len(self.context.devices) == len(self.context.device_weights),
             "context.device_weights needs one weight per device"),
            (0.0 <= self.items.new_fraction < 1.0, "items.new_fraction must be in [0, 1)"),
            (0.0 <= self.run.fresh_share <= 1.0, "run.fresh_share must be in [0, 1]"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        unknown = [p for p in self.run.policies if p not in POLICIES]
        if unknown:
            raise ConfigError(f"unknown policies {unknown}; choose from {', '.join(POLICIES)}")
        return self

    def with_overrides(self, **sections: Mapping[str, Any]) -> "SimConfig":
        """A copy with some fields of some sections replaced, e.g. ``run={"actions": 10}``."""
        changes: dict[str, Any] = {}
        for name, values in sections.items():
            if name == "seed":
                changes["seed"] = int(values)  # type: ignore[call-overload]
            elif name == "service":
                changes["service"] = {**self.service, **values}
            else:
                changes[name] = _section(name, {**dataclasses.asdict(getattr(self, name)), **values})
        return dataclasses.replace(self, **changes).validate()


_SECTIONS = {"items": ItemsConfig, "users": UsersConfig, "context": ContextConfig, "choice": ChoiceConfig,
             "dynamics": DynamicsConfig, "run": RunConfig}


def _section(name: str, values: Mapping[str, Any]) -> Any:
    cls = _SECTIONS[name]
    known = {f.name: f for f in fields(cls)}
    kwargs = {}
    for key, raw in values.items():
        if key not in known:
            raise ConfigError(f"unknown setting [{name}] {key}; known: {', '.join(known)}")
        default = known[key].default
        try:
            kwargs[key] = tuple(raw) if isinstance(default, tuple) else type(default)(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"[{name}] {key}={raw!r} should be a {type(default).__name__}") from None
    return cls(**kwargs)


def load_config(path: str | Path | None = None) -> SimConfig:
    """The default MovieLens-calibrated world, with the TOML file's values (if any) on top."""
    if path is None:
        return SimConfig().validate()
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read simulator config {path}: {exc}") from None
    sections: dict[str, Any] = {}
    for key, value in data.items():
        if key in _SECTIONS or key == "service":
            if not isinstance(value, dict):
                raise ConfigError(f"[{key}] must be a table")
            sections[key] = value
        elif key == "seed":
            sections["seed"] = value
        else:
            raise ConfigError(f"unknown key {key!r} in {path}; use seed or [{'], ['.join([*_SECTIONS, 'service'])}]")
    return SimConfig().with_overrides(**sections)


def config_table() -> str:
    """Markdown table of every knob with its default (kept in step with docs/simulator.md)."""
    rows = ["| Setting | Default | Meaning |", "|---|---|---|"]
    for name, cls in _SECTIONS.items():
        for f in fields(cls):
            default = f.default
            shown = list(default) if isinstance(default, tuple) else default
            rows.append(f"| `[{name}] {f.name}` | `{shown!r}` | {f.metadata['help']} |")
    return "\n".join(rows)
