"""Auto-optimization: every ``autoOptimizationFrequency``, evaluate the last period with policy
optimization, and apply the optimal policy only when the logs support it.

The safeguard (``decide``): the optimal policy replaces the one in force only if

1. the evaluation saw at least ``AUTO_MIN_EVENTS`` events, and
2. the lower end of the paired 95% bootstrap interval of its gain over the policy in force (both
   replayed from scratch on the same events, SNIPS) is above ``AUTO_MIN_GAIN``: the improvement is
   larger than what resampling the same log could produce by chance.

Otherwise the policy in force is retained; the evaluation's status says which
(``OptimalPolicyApplied`` / ``OnlinePolicyRetained``) and its description says why.

These are pure functions of (now, the auto-optimization settings, the evaluation result): the job
runner calls them, and tests drive them with a fake clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["AutoOptimization", "AutoDecision", "from_service_config", "next_auto_window", "decide", "AUTO_MIN_EVENTS", "AUTO_MIN_GAIN"]

#: Fewest events an automatic evaluation needs before it may change the policy.
AUTO_MIN_EVENTS = 1_000
#: The gain's 95% lower bound must exceed this (reward units) for the optimal policy to be applied.
AUTO_MIN_GAIN = 0.0


@dataclass(frozen=True)
class AutoOptimization:
    """The service configuration's auto-optimization values (``isAutoOptimizationEnabled``,
    ``autoOptimizationFrequency`` in seconds, ``autoOptimizationStartDate`` as UNIX seconds)."""

    enabled: bool
    frequency: float
    start: float | None = None


def from_service_config(config: Any) -> AutoOptimization | None:
    """The auto-optimization values of a service configuration (personalize.service_config.ServiceConfig, read
    from LiveConfig.current: no query); None while it is off or has no autoOptimizationFrequency."""
    if not config.auto_optimization_enabled or not config.auto_optimization_frequency:
        return None
    return AutoOptimization(True, config.auto_optimization_frequency, config.auto_optimization_start_date)


@dataclass(frozen=True)
class AutoDecision:
    apply: bool
    reason: str
    arguments: str | None = None


def next_auto_window(now: float, config: AutoOptimization | None, last_created: float | None) -> tuple[float, float] | None:
    """The [start, end) of the automatic evaluation to create now, or None when none is due.

    Due when enabled, past the start date, and ``frequency`` after the previous automatic evaluation
    was created (or at once if there was none); it covers the last ``frequency`` seconds."""
    if config is None or not config.enabled or config.frequency <= 0:
        return None
    if config.start is not None and now < config.start:
        return None
    if last_created is not None and now - last_created < config.frequency:
        return None
    return (now - config.frequency, now)


def decide(result: dict[str, Any], min_events: int = AUTO_MIN_EVENTS, min_gain: float = AUTO_MIN_GAIN) -> AutoDecision:
    """Whether an automatic evaluation's optimal policy should replace the policy in force."""
    optimization = result.get("optimization")
    if not optimization:
        return AutoDecision(False, "the evaluation did not search for an optimal policy")
    events = int(result.get("events", 0))
    if events < min_events:
        return AutoDecision(False, f"only {events} events in the period (at least {min_events} are needed to change the policy)")
    best = next((p["arguments"] for p in result["policies"] if p.get("policySource") == "OfflineExperimentation"), None)
    if best is None or " ".join(best.split()) == " ".join(optimization["baseline"].split()):
        return AutoDecision(False, "the policy in force is the best one found")
    gain = optimization["gainOverCurrent"]
    low, high = gain["confidenceInterval"]
    if low is None or not low > min_gain:
        return AutoDecision(False, f"gain {gain['estimate']:+.4f} with 95% interval [{low:+.4f}, {high:+.4f}] does not "
                                   f"exclude {min_gain:+.4f}: the policy in force is retained")
    return AutoDecision(True, f"gain {gain['estimate']:+.4f} with 95% interval [{low:+.4f}, {high:+.4f}] over the policy "
                              "in force", best)
