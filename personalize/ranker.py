"""The ranker: scores actions with the newest published model and samples one to explore.

It never writes the model. It swaps to a newer snapshot when one is offered (in-process
learner) or found in the database (other learner process). VW workspaces are not
thread-safe, so every parse/predict happens under a lock.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from personalize.sampling import mix_uniform, normalize, sample_index, squarecb_scale, uniform_for
from personalize.vw import Model

__all__ = ["Ranker", "Decision", "Explorer", "explored"]

#: Probabilities closer than this are equal: VW computes its PMF in float32 (1/3 comes back as
#: 0.33333331 for one action and 0.33333334 for another).
PROBABILITY_TOLERANCE = 1e-6


def explored(probability: float, probabilities: list[float]) -> bool:
    """Whether the chosen action (probability ``probability``) was not a greedy one: some action of the
    same decision was more probable. With all actions equally likely (an untrained model) none is."""
    return probability < max(probabilities) - PROBABILITY_TOLERANCE


@dataclass(frozen=True)
class Explorer:
    """What the service does to the learning policy's PMF before it samples: SquareCB scaled to the
    number of actions, then the uniform floor. Shared by the ranker and off-policy replay, so an
    evaluated policy is the one the service would serve."""

    exploration: float = 0.0
    squarecb_actions: int = 0  # 0: VW's PMF as is

    @classmethod
    def for_policy(cls, vw_args: list[str], exploration: float, squarecb_actions: int) -> "Explorer":
        # SquareCB's exploration mass grows with the number of actions K (each non-greedy action
        # gets 1/(K + gamma*gap)); above squarecb_actions actions, gamma is scaled by
        # K/squarecb_actions so a Rank explores about as much as one with squarecb_actions actions.
        plain_squarecb = "--squarecb" in vw_args and "--elim" not in vw_args
        return cls(exploration, squarecb_actions if plain_squarecb else 0)

    def pmf(self, vw_pmf: list[float]) -> list[float]:
        """The sampling PMF (sums to 1) from VW's PMF, in the same order."""
        pmf = normalize(vw_pmf)
        if 0 < self.squarecb_actions < len(pmf):
            pmf = squarecb_scale(pmf, len(pmf) / self.squarecb_actions)
        return mix_uniform(pmf, self.exploration)


@dataclass(frozen=True)
class Decision:
    """Positions refer to the ``_multi`` list; ``ranking[0]`` is the chosen action."""

    ranking: list[int]
    probabilities: list[float]  # aligned with ranking
    model_version: int

    @property
    def chosen(self) -> int:
        return self.ranking[0]

    @property
    def probability(self) -> float:
        return self.probabilities[0]

    @property
    def explored(self) -> bool:
        return explored(self.probabilities[0], self.probabilities)


class Ranker:
    def __init__(self, vw_args: list[str], exploration: float = 0.0, squarecb_actions: int = 0) -> None:
        self._vw_args = vw_args
        self._squarecb_actions = squarecb_actions
        self.explorer = Explorer.for_policy(vw_args, exploration, squarecb_actions)
        self._lock = threading.Lock()
        self._model = Model(vw_args)
        self.version = 0

    @property
    def vw_args(self) -> list[str]:
        """The learning policy of the model in use."""
        return self._vw_args

    def load(self, version: int, model: bytes, vw_args: str | None = None) -> None:
        """Switch to snapshot ``version`` (ignored if not newer than the current one). ``vw_args``: the
        snapshot's learning policy; a new policy brings its own exploration (SquareCB scaling or not)."""
        if version <= self.version:
            return
        loaded = Model(["--quiet"], model_data=model)  # options travel inside the model
        args = vw_args.split() if vw_args is not None else self._vw_args
        with self._lock:
            if version > self.version:
                # a new policy keeps the exploration floor in force (which the live configuration may have changed)
                explorer = (Explorer.for_policy(args, self.explorer.exploration, self._squarecb_actions)
                            if args != self._vw_args else self.explorer)
                # swap only: the old model is freed (milliseconds for VW) after the lock is released
                self._model, self.version, loaded = loaded, version, self._model
                self._vw_args, self.explorer = args, explorer
        del loaded

    def set_exploration(self, exploration: float) -> None:
        """Use a new exploration floor from the next decision on (under the lock: a concurrent ``load`` of a new
        policy keeps it)."""
        with self._lock:
            if exploration != self.explorer.exploration:
                self.explorer = Explorer.for_policy(self._vw_args, exploration, self._squarecb_actions)

    def reset(self) -> None:
        """Back to an untrained model (version 0), e.g. after the model was deleted."""
        model = Model(self._vw_args)
        with self._lock:
            self._model, self.version = model, 0

    def decide(self, context_json: str, event_id: str) -> Decision:
        """Predict the PMF for the ``c`` object and draw the chosen action with the event-id seed."""
        with self._lock:
            scores = self._model.predict('{"c":' + context_json + "}")
            version = self.version
            explorer = self.explorer
        order = [index for index, _ in scores]
        probabilities = explorer.pmf([p for _, p in scores])  # read once under the lock: one whole explorer
        pick = sample_index(probabilities, uniform_for(event_id))
        ranking = [order[pick]] + order[:pick] + order[pick + 1:]
        ranked_p = [probabilities[pick]] + probabilities[:pick] + probabilities[pick + 1:]
        return Decision(ranking=ranking, probabilities=ranked_p, model_version=version)
