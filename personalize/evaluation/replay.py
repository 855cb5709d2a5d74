"""Counterfactual replay: what would another learning policy have done on the logged events?

Each candidate policy is a fresh VW with its own arguments. It reads the logged events in
order; on each it first predicts (its probability of every action, before it has seen the
event) and then learns from the logged action, reward and probability, exactly as the
service's learner would have. A separate reward model (VW ``--cb_adf`` regression, also
predict-then-learn, so every prediction is out of sample) feeds the model-based estimators.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np
import vowpal_wabbit_next as vw

from personalize.config import Settings
from personalize.evaluation.estimators import Logged

__all__ = ["LoggedEvent", "parse_dsjson", "policy_args", "replay_policy", "reward_model", "logged_for",
           "REWARD_MODEL_ARGS"]

#: The reward model behind DM/DR: cost regression on the same quadratic features as the service.
REWARD_MODEL_ARGS: tuple[str, ...] = ("--cb_adf", "--cb_type", "mtr", "-q", "::", "--quiet")


@dataclass(frozen=True)
class LoggedEvent:
    line: str  # the DSJSON line, as the learner saw it
    chosen: int  # 0-based action index
    reward: float
    logged_pmf: np.ndarray  # logging probability of every action, by action index

    @property
    def probability(self) -> float:
        return float(self.logged_pmf[self.chosen])


def parse_dsjson(lines: Iterable[str]) -> Iterator[LoggedEvent]:
    """Labelled decision lines (``_label_cost`` present); others (unlearned, skipped) are left out."""
    for text in lines:
        text = text.strip()
        if not text:
            continue
        data = json.loads(text)
        if "_label_cost" not in data or "c" not in data:
            continue
        n = len(data["c"].get("_multi", []))
        pmf = np.zeros(n)
        pmf[np.asarray(data["a"], dtype=int) - 1] = data["p"]
        chosen = int(data.get("_labelIndex", data["_label_Action"] - 1))
        pmf[chosen] = float(data["_label_probability"])
        yield LoggedEvent(line=text, chosen=chosen, reward=-float(data["_label_cost"]), logged_pmf=pmf)


def policy_args(learning_policy: str, exploration: float | None = None) -> list[str]:
    """VW arguments exactly as the service would build them from these settings."""
    settings = Settings(learning_policy=learning_policy)
    if exploration is not None:
        settings = settings.replace(exploration=exploration)
    return settings.vw_args


def _pmf(prediction: Sequence[tuple[int, float]], n: int) -> np.ndarray:
    pmf = np.zeros(n)
    for index, p in prediction:
        pmf[index] = max(float(p), 0.0)
    total = pmf.sum()
    return pmf / total if total > 0 else np.full(n, 1.0 / n)


def replay_policy(events: Sequence[LoggedEvent], args: Sequence[str]) -> list[np.ndarray]:
    """The policy's action probabilities on every event, each from before it learned that event."""
    workspace = vw.Workspace(list(args))
    parser = vw.DSJsonFormatParser(workspace)
    return [_pmf(workspace.predict_then_learn_one(parser.parse_json(e.line)), len(e.logged_pmf)) for e in events]


def reward_model(events: Sequence[LoggedEvent], reward_range: tuple[float, float] = (0.0, 1.0)) -> list[np.ndarray]:
    """Out-of-sample predicted reward of every action of every event (progressive validation)."""
    workspace = vw.Workspace(list(REWARD_MODEL_ARGS))
    parser = vw.DSJsonFormatParser(workspace)
    out = []
    for e in events:
        q = np.zeros(len(e.logged_pmf))
        for index, cost in workspace.predict_then_learn_one(parser.parse_json(e.line)):
            q[index] = -float(cost)
        out.append(np.clip(q, *reward_range))
    return out


def logged_for(events: Sequence[LoggedEvent], target: Sequence[np.ndarray], q: Sequence[np.ndarray]) -> Logged:
    """The estimator inputs of one target policy."""
    return Logged(
        reward=np.array([e.reward for e in events]),
        mu=np.array([e.probability for e in events]),
        pi=np.array([t[e.chosen] for e, t in zip(events, target)]),
        q=np.array([qi[e.chosen] for e, qi in zip(events, q)]),
        dm=np.array([float(t @ qi) for t, qi in zip(target, q)]),
    )
