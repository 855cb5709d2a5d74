"""Counterfactual replay: what would another policy have done on the logged events?

Two kinds of target policy. A *learning* policy (``replay_policy``) is a fresh VW with its own
arguments that reads the logged events in order; on each it first predicts (its probability of
every action, before it has seen the event) and then learns from the logged action, reward and
probability, exactly as the service's learner would have. A *frozen* policy (``frozen_policy``)
is a VW model trained once on other (earlier) events and then only predicts: a fixed policy,
the usual object of off-policy evaluation.

The reward model behind DM/DR (``reward_model``) regresses the reward on the logged action's
context and action features without importance weights (VW ``--cb_type dm``), cross-fitted:
each fold's predictions come from a model trained on the other folds only, so no prediction
has seen its own event.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np
import vowpal_wabbit_next as vw

from personalize.config import Settings
from personalize.evaluation.estimators import Logged
from personalize.ranker import Explorer

__all__ = ["LoggedEvent", "parse_dsjson", "policy_args", "replay_policy", "frozen_policy", "reward_model",
           "logged_for", "REWARD_MODEL_ARGS"]

#: The reward model behind DM/DR: an unweighted squared-loss regression of the reward on the
#: logged action's features crossed with the context (``-q ca``, as in the service; a constant
#: ``-l 0.1`` because the log is small and replayed in passes, so decaying rates under-fit). ``mtr``
#: weights each event by 1/probability (a few rare actions dominate the fit); plain ``dm`` on
#: the full action set also learns cost 0 for every action not taken, pulling all predictions
#: to 0 -- so the model is trained on the taken action alone (see ``_taken_only``).
REWARD_MODEL_ARGS: tuple[str, ...] = ("--cb_adf", "--cb_type", "dm", "-q", "ca", "--power_t", "0", "-l", "0.1",
                                      "--quiet")


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


def policy_args(learning_policy: str) -> list[str]:
    """VW arguments exactly as the service would build them from this learning policy."""
    return Settings(learning_policy=learning_policy).vw_args


def _pmf(prediction: Sequence[tuple[int, float]], n: int) -> np.ndarray:
    pmf = np.zeros(n)
    for index, p in prediction:
        pmf[index] = max(float(p), 0.0)
    total = pmf.sum()
    return pmf / total if total > 0 else np.full(n, 1.0 / n)


def replay_policy(events: Sequence[LoggedEvent], args: Sequence[str], explorer: Explorer | None = None) -> list[np.ndarray]:
    """The policy's action probabilities on every event, each from before it learned that event;
    with ``explorer``, as the service would sample them (its SquareCB scaling and floor)."""
    workspace = vw.Workspace(list(args))
    parser = vw.DSJsonFormatParser(workspace)
    pmfs = [_pmf(workspace.predict_then_learn_one(parser.parse_json(e.line)), len(e.logged_pmf)) for e in events]
    if explorer is None:
        return pmfs
    return [np.array(explorer.pmf(list(pmf))) for pmf in pmfs]


def frozen_policy(train: Sequence[LoggedEvent], events: Sequence[LoggedEvent], args: Sequence[str]) -> list[np.ndarray]:
    """A VW policy trained once on ``train`` (in order), then frozen: its action probabilities on ``events``."""
    workspace = vw.Workspace(list(args))
    parser = vw.DSJsonFormatParser(workspace)
    for e in train:
        workspace.learn_one(parser.parse_json(e.line))
    return [_pmf(workspace.predict_one(parser.parse_json(e.line)), len(e.logged_pmf)) for e in events]


def _taken_only(line: str) -> str:
    """The DSJSON line reduced to the taken action (a regression example for that action alone)."""
    data = json.loads(line)
    taken = int(data.get("_labelIndex", data["_label_Action"] - 1))
    data["c"]["_multi"] = [data["c"]["_multi"][taken]]
    data.update({"a": [1], "p": [1.0], "_label_Action": 1, "_labelIndex": 0, "_label_probability": 1.0})
    return json.dumps(data)


def reward_model(events: Sequence[LoggedEvent], reward_range: tuple[float, float] = (0.0, 1.0), folds: int = 2,
                 passes: int = 2, seed: int = 0) -> list[np.ndarray]:
    """Cross-fitted predicted reward of every action of every event.

    Events are dealt to ``folds`` folds in turn (so every fold spans the whole log); each fold is
    predicted by a model trained, ``passes`` times in a shuffled order, on the other folds.
    """
    n = len(events)
    out: list[np.ndarray] = [np.empty(0)] * n
    fold_of = np.arange(n) % folds if folds > 1 else np.zeros(n, dtype=int)
    rng = np.random.default_rng(seed)
    for k in range(folds):
        workspace = vw.Workspace(list(REWARD_MODEL_ARGS))
        parser = vw.DSJsonFormatParser(workspace)
        train = np.flatnonzero(fold_of != k) if folds > 1 else np.arange(n)
        parsed = {int(i): parser.parse_json(_taken_only(events[i].line)) for i in train}
        for _ in range(passes):
            for i in rng.permutation(train):
                workspace.learn_one(parsed[int(i)])
        del parsed
        for i in np.flatnonzero(fold_of == k):
            e = events[i]
            q = np.zeros(len(e.logged_pmf))
            for index, cost in workspace.predict_one(parser.parse_json(e.line)):
                q[index] = -float(cost)
            out[i] = np.clip(q, *reward_range)
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
