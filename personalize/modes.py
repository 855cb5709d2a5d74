"""Learning modes (Personalizer's ``learningMode``): whether Rank serves the model or the baseline,
and whether the learner learns from the events.

- ``Online``: Rank serves the model's choice (with exploration); the learner learns every event.
- ``Apprentice``: Rank serves the **baseline** (the first action that is not excluded, as
  Personalizer did; for generated candidates the generators' first) and logs it with probability
  1.0, the probability it was served with. The learner learns these events as they are: the
  baseline's rewards, with importance weight 1, so the model learns what the baseline earns in
  each context and comes to imitate it where it does well.
- ``LoggingOnly``: Rank serves the baseline, events and rewards are logged and joined, and the
  learner learns nothing from them (the model is never changed by them, even after a switch to
  Online).

In both baseline modes the model still predicts (its cost is paid either way), and the event
records the action the model would have served in Online (``model_index``), so status can report
how often the model agrees with the baseline and what its choices would earn
(``store.apprentice_metrics``). The mode in force when an event was ranked decides how it is
learned; a mode change applies to the next Rank.

Multi-slot ranking calls :func:`serves_baseline` per Rank and :func:`baseline_decision` per slot.
"""

from __future__ import annotations

from personalize.ranker import Decision

__all__ = ["ONLINE", "APPRENTICE", "LOGGING_ONLY", "serves_baseline", "learns", "baseline_decision", "stored_mode"]

ONLINE, APPRENTICE, LOGGING_ONLY = "Online", "Apprentice", "LoggingOnly"


def serves_baseline(mode: str) -> bool:
    """Whether Rank answers the baseline (True) or the model's exploring choice (False) in ``mode``."""
    return mode != ONLINE


def learns(mode: str | None) -> bool:
    """Whether the learner learns from an event ranked in ``mode`` (None: Online, or ranked before modes existed)."""
    return mode != LOGGING_ONLY


def stored_mode(mode: str) -> str | None:
    """The value of an event's ``learning_mode`` column: NULL for Online, so Online rows stay as before."""
    return None if mode == ONLINE else mode


def baseline_decision(model: Decision, baseline: int) -> Decision:
    """What a baseline mode serves and logs: ``baseline`` (a position in the ranked list) with probability
    1.0, then the other actions in the model's order with probability 0.0 (they could not have been served)."""
    rest = [i for i in model.ranking if i != baseline]
    return Decision(ranking=[baseline] + rest, probabilities=[1.0] + [0.0] * len(rest), model_version=model.model_version)
