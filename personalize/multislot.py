"""Multi-slot Rank (Personalizer's multi-slot personalization; VW's conditional contextual bandit).

One Rank fills several slots (a page's hero, its side bars, ...) with distinct actions. The slots
are filled in request order; each slot's action is drawn from its own PMF over the actions it
allows that earlier slots did not take, and that PMF's probability of the drawn action is logged:
the exact probability each slot's choice was made with, given the slots before it.

VW (``--ccb_explore_adf``) predicts every slot in one call, but it conditions each slot on the
action it lists *first* for the slots before it, not on the one the service draws. So the ranker
asks VW once, keeps each slot's PMF for as long as the drawn actions are the ones VW conditioned on,
and asks again, with the slots decided so far pinned to their drawn actions (``_inc``), from the
first slot where they differ (an exploring draw). The logged example lists the answered slots with
the actions they allowed, and the learner's outcomes name the drawn actions, so VW learns with
exactly the exclusions it predicted with.

``choose_slot`` is the one place a slot's action is picked: ``explore_choice`` samples the PMF
(Online); ``baseline_choice`` answers the slot's ``baselineAction`` with probability 1 (what
Apprentice and LoggingOnly modes answer). ``SlotRanker.decide`` takes either.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from typing import Any, Callable

import orjson

from personalize.api.errors import ApiError
from personalize.api.schemas import RequestSchemas
from personalize.features import (
    ACTION_ID_NAMESPACE, ACTION_INDEX, CONTEXT_INDEX, FeatureBudget, build_context, counted_namespaces, vw_feature_count,
)
from personalize.limits import RankLimits
from personalize.ranker import Explorer
from personalize.sampling import sample_index, uniform_for
from personalize.vw import SlotModel

__all__ = ["Slot", "MultiSlotRequest", "SlotChoice", "SlotDecision", "SlotRanker", "SLOT_INDEX", "SLOT_ID_NAMESPACE",
           "parse_multislot_request", "parse_slot_rewards", "explore_choice", "baseline_choice", "check_crossed"]

#: VW namespace group of slot features (``-q sa`` crosses them with the actions').
SLOT_INDEX = "s"
#: Each slot's id as a feature, in the id namespace the service reserves (clients may not send it).
SLOT_ID_NAMESPACE = f"{SLOT_INDEX}_{ACTION_ID_NAMESPACE}"


@dataclass(frozen=True)
class Slot:
    id: str
    namespaces: dict[str, Any]  # VW namespaces of group SLOT_INDEX, the slot id's included
    allowed: tuple[int, ...]  # the actions (request positions) this slot may take: all but its excludedActions
    baseline: int  # the baselineAction's request position
    features: int  # at least the features VW makes of the slot's namespaces


@dataclass
class MultiSlotRequest:
    event_id: str
    context: dict[str, Any]
    context_features: int
    actions: list[tuple[str, dict[str, Any]]]  # (id, VW namespaces), request order
    action_features: list[int]
    slots: list[Slot]
    defer: bool


def parse_multislot_request(body: Any, schemas: RequestSchemas, max_features: int) -> MultiSlotRequest:
    """Validate a Personalizer multi-slot Rank body: the MultiSlotRankRequest schema, then the rules a
    schema cannot state (unique action and slot ids, excluded and baseline actions among the actions,
    a distinct baseline per slot that the slot does not exclude, no more slots than actions)."""
    schemas.check("MultiSlotRankRequest", body)
    budget = FeatureBudget(max_features)
    context, context_features = counted_namespaces(body.get("contextFeatures"), "contextFeatures", CONTEXT_INDEX, budget)
    actions: list[tuple[str, dict[str, Any]]] = []
    action_features: list[int] = []
    position: dict[str, int] = {}
    for i, action in enumerate(body["actions"]):
        action_id = action["id"]
        if action_id in position:
            raise ApiError(400, "DuplicateActionId", f"actions[{i}].id {action_id!r} appears twice; action ids must be unique.",
                           f"actions[{i}].id")
        position[action_id] = i
        namespaces, count = counted_namespaces(action.get("features"), f"actions[{i}].features", ACTION_INDEX, budget)
        actions.append((action_id, namespaces))
        action_features.append(count)
    raw_slots = body["slots"]
    if len(raw_slots) > len(actions):
        raise ApiError(400, "TooManySlots", f"{len(raw_slots)} slots but {len(actions)} actions: each slot gets a distinct "
                       "action, so send at most as many slots as actions.", "slots")
    slots: list[Slot] = []
    slot_ids: set[str] = set()
    baselines: dict[int, int] = {}
    for i, raw in enumerate(raw_slots):
        where = f"slots[{i}]"
        slot_id = raw["id"]
        if slot_id in slot_ids:
            raise ApiError(400, "DuplicateSlotId", f"{where}.id {slot_id!r} appears twice; slot ids must be unique.", f"{where}.id")
        slot_ids.add(slot_id)
        excluded: set[int] = set()
        for j, action_id in enumerate(raw.get("excludedActions") or []):
            if action_id not in position:
                target = f"{where}.excludedActions[{j}]"
                raise ApiError(400, "UnknownExcludedAction", f"{target} {action_id!r} is not the id of any action in this request.", target)
            excluded.add(position[action_id])
        target = f"{where}.baselineAction"
        baseline = position.get(raw["baselineAction"])
        if baseline is None:
            raise ApiError(400, "UnknownBaselineAction", f"{target} {raw['baselineAction']!r} is not the id of any action in "
                           "this request; name the action this slot shows without personalization.", target)
        if baseline in excluded:
            raise ApiError(400, "BaselineActionExcluded", f"{target} {raw['baselineAction']!r} is in {where}.excludedActions; "
                           "a slot's baseline action must be one it may show.", target)
        if baseline in baselines:
            raise ApiError(400, "DuplicateBaselineAction", f"{target} {raw['baselineAction']!r} is also the baseline of "
                           f"slots[{baselines[baseline]}]; every slot needs a baseline action of its own.", target)
        baselines[baseline] = i
        namespaces, count = counted_namespaces(raw.get("features"), f"{where}.features", SLOT_INDEX, budget)
        namespaces = {**namespaces, SLOT_ID_NAMESPACE: {"slot": slot_id}}
        allowed = tuple(a for a in range(len(actions)) if a not in excluded)
        slots.append(Slot(slot_id, namespaces, allowed, baseline, count + 1))
    return MultiSlotRequest(
        event_id=body.get("eventId") or uuid.uuid4().hex, context=context, context_features=context_features,
        actions=actions, action_features=action_features, slots=slots, defer=bool(body.get("deferActivation")),
    )


def parse_slot_rewards(body: Any, schemas: RequestSchemas) -> list[tuple[str, float]]:
    """The (slotId, value) pairs of a multi-slot Reward body, validated by the MultiSlotRewardRequest schema."""
    schemas.check("MultiSlotRewardRequest", body)
    return [(entry["slotId"], float(entry["value"])) for entry in body["reward"]]


def check_crossed(limits: RankLimits, request: MultiSlotRequest) -> None:
    """A 400 when VW would form more than max_crossed_features for this Rank: for each slot, the learning
    policy's interactions over the context's (group c), the slot's (s) and each action's (a) features, twice
    (VW's CCB adds a copy of each interaction with the slot's position). A cheap bound first, from the
    counts the parse made, as single-slot Rank does (limits.RankLimits.check_crossed); the exact count only
    when that bound is over the limit."""
    if _crossed(limits, request, exact=False) <= limits.max_crossed_features:
        return
    total = _crossed(limits, request, exact=True)
    if total > limits.max_crossed_features:
        terms = " ".join(limits.interactions.terms) or "none"
        raise ApiError(
            400, "TooManyCrossedFeatures",
            f"This multi-slot Rank would make VW form {total} crossed features (the multi-slot learning policy's "
            f"interactions, {terms}, over the context's, each slot's and each of the {len(request.actions)} actions' "
            f"features, for each of the {len(request.slots)} slots); at most {limits.max_crossed_features} are "
            "accepted (setting max_crossed_features): send fewer features, actions or slots, or raise "
            "PERSONALIZE_MAX_CROSSED_FEATURES.", "slots",
        )


def _crossed(limits: RankLimits, request: MultiSlotRequest, exact: bool) -> int:
    context = vw_feature_count(request.context) if exact else request.context_features
    actions = ([vw_feature_count(ns) for _, ns in request.actions] if exact else request.action_features)
    total = 0
    for slot in request.slots:
        slot_count = vw_feature_count(slot.namespaces) if exact else slot.features
        for (_, namespaces), count in zip(request.actions, actions):
            counts = limits._example(context, count, bool(namespaces))  # the context and the action, as single-slot
            counts[SLOT_INDEX] = slot_count
            total += 2 * limits.interactions.crossed(counts)
    return total


# -- choosing ----------------------------------------------------------------------------------
#: Picks a slot's action: (slot, the actions VW ranked for it (request positions), their sampling PMF
#: (the policy's, exploration included), a uniform draw in [0, 1) seeded by the event id and the slot)
#: -> (position in ``actions``, the distribution it was drawn from, aligned with ``actions``). That
#: distribution is what is logged, so the logged probability is the one the choice was made with.
SlotChooser = Callable[[Slot, list[int], list[float], float], tuple[int, list[float]]]


def explore_choice(slot: Slot, actions: list[int], pmf: list[float], u: float) -> tuple[int, list[float]]:
    """Online: draw from the policy's PMF (inverse CDF)."""
    return sample_index(pmf, u), pmf


def baseline_choice(slot: Slot, actions: list[int], pmf: list[float], u: float) -> tuple[int, list[float]]:
    """Apprentice/LoggingOnly: the slot's baselineAction, with probability 1. Baselines are distinct and never
    excluded by their own slot, so when every slot answers its baseline, each one is available."""
    pick = actions.index(slot.baseline)
    return pick, [1.0 if i == pick else 0.0 for i in range(len(actions))]


@dataclass(frozen=True)
class SlotChoice:
    """One slot's answer: ``ranking`` are request positions with the chosen first, ``probabilities`` aligned
    (the sampling PMF; the chosen's is the logged probability). Both empty: the slot got no action."""

    id: str
    ranking: list[int]
    probabilities: list[float]

    @property
    def chosen(self) -> int | None:
        return self.ranking[0] if self.ranking else None


@dataclass(frozen=True)
class SlotDecision:
    slots: list[SlotChoice]  # request order
    model_version: int
    example: str  # the DSJSON ``c`` object the learner learns from (answered slots, their allowed actions)


def _slot_object(slot: Slot, include: tuple[int, ...] | list[int] | None) -> dict[str, Any]:
    out: dict[str, Any] = {"_id": slot.id, **slot.namespaces}
    if include is not None:
        out["_inc"] = list(include)
    return out


class SlotRanker:
    """The multi-slot model's ranker: predicts with the newest multi-slot snapshot, never writes it."""

    def __init__(self, vw_args: list[str], exploration: float = 0.0, squarecb_actions: int = 0) -> None:
        self._vw_args = vw_args
        self.explorer = Explorer.for_policy(vw_args, exploration, squarecb_actions)
        self._lock = threading.Lock()
        self._model = SlotModel(vw_args)
        self.version = 0

    def load(self, version: int, model: bytes) -> None:
        """Switch to snapshot ``version`` (ignored if not newer than the current one)."""
        if version <= self.version:
            return
        loaded = SlotModel(["--quiet"], model_data=model)
        with self._lock:
            if version > self.version:
                self._model, self.version, loaded = loaded, version, self._model
        del loaded

    def decide(self, request: MultiSlotRequest, action_id_mode: str, chooser: SlotChooser = explore_choice) -> SlotDecision:
        """Fill the slots in order (see the module docstring): each slot's PMF from VW given the actions drawn
        for the slots before it, then ``chooser``'s pick from it."""
        base = build_context(request.context, request.actions, action_id_mode)[:-1]  # '{...,"_multi":[...]' + slots
        n_actions = len(request.actions)
        taken: set[int] = set()
        pinned: list[dict[str, Any]] = []  # answered slots, pinned to their drawn action
        logged: list[dict[str, Any]] = []  # answered slots as the learner sees them
        choices: list[SlotChoice] = []
        pmfs: list[list[tuple[int, float]]] = []  # VW's PMFs of the slots from `slot_index` on, while valid
        with self._lock:
            model, version = self._model, self.version
            for k, slot in enumerate(request.slots):
                available = [a for a in slot.allowed if a not in taken]
                if not available:  # everything it allows was taken: it gets no action (and VW never sees it)
                    choices.append(SlotChoice(slot.id, [], []))
                    pmfs = []
                    continue
                if not pmfs:
                    pending = [_slot_object(slot, None if len(slot.allowed) == n_actions else slot.allowed)]
                    for i, later in enumerate(request.slots[k + 1:], 1):
                        # VW may take up to i actions before this slot: include it only if it cannot run dry.
                        if sum(1 for a in later.allowed if a not in taken) <= i:
                            break
                        pending.append(_slot_object(later, None if len(later.allowed) == n_actions else later.allowed))
                    line = base + ',"_slots":' + orjson.dumps(pinned + pending).decode() + "}}"
                    pmfs = model.predict_slots('{"c":' + line)[len(pinned):]
                vw_pmf = pmfs.pop(0)
                order = [a for a, _ in vw_pmf]
                if sorted(order) != available:  # pragma: no cover - guards the VW behaviour this relies on
                    raise RuntimeError(f"VW ranked actions {sorted(order)} for slot {slot.id!r}, expected {available}")
                pmf = self.explorer.pmf([p for _, p in vw_pmf])
                pick, drawn_from = chooser(slot, order, pmf, uniform_for(f"{request.event_id}\x00{k}"))
                if pick != 0:
                    pmfs = []  # VW conditioned the later slots on order[0]
                chosen = order[pick]
                taken.add(chosen)
                rest = [i for i in range(len(order)) if i != pick]
                choices.append(SlotChoice(slot.id, [chosen] + [order[i] for i in rest],
                                          [drawn_from[pick]] + [drawn_from[i] for i in rest]))
                pinned.append(_slot_object(slot, [chosen]))
                logged.append(_slot_object(slot, None if len(slot.allowed) == n_actions else slot.allowed))
        example = base + ',"_slots":' + orjson.dumps(logged).decode() + "}"
        return SlotDecision(choices, version, example)
