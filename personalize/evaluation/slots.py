"""Off-policy evaluation of multi-slot learning policies, slot by slot, on logged CCB DSJSON lines.

A multi-slot event logs, for every answered slot, the action drawn and the probability it was drawn
with *given the actions drawn for the slots before it* (personalize.multislot). So each slot is a
contextual-bandit decision of its own, whose context includes the earlier slots' choices, and the
usual estimators apply per slot: with ``w = pi(a_k | x, a_<k) / mu(a_k | x, a_<k)``,

- IPS ``mean(w r_k)`` and SNIPS ``sum(w r_k) / sum(w)`` estimate the mean reward slot ``k`` would earn
  if the target policy filled it, the earlier slots staying as logged.

That is the per-slot value VW's CCB optimizes; it is not the value of the target filling every slot
(that would need the product of the slots' weights, whose variance grows with each slot).

The target's probabilities come from replaying it as ``personalize evaluate`` replays single-slot
policies (evaluation.replay): a fresh VW reads the events in order, predicting each before learning
it. Each slot is predicted with the earlier slots pinned to their logged actions (``_inc``), so VW
conditions on the logged choices, and through the service's exploration (ranker.Explorer).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np

from personalize.config import Settings
from personalize.evaluation.estimators import bootstrap_ci, ips, snips
from personalize.evaluation.estimators import Logged
from personalize.ranker import Explorer
from personalize.vw import SlotModel

__all__ = ["LoggedSlots", "SlotEstimate", "parse_ccb_dsjson", "replay_slots", "evaluate_slots", "format_slots_table",
           "ONLINE"]

ONLINE = "online (logged)"


@dataclass(frozen=True)
class LoggedSlots:
    """One multi-slot event: its CCB line and, per answered slot, (slot id, action, probability, reward)."""

    line: str
    slot_ids: list[str]
    chosen: list[int]
    probability: list[float]
    reward: list[float]


def parse_ccb_dsjson(lines: Iterable[str]) -> Iterator[LoggedSlots]:
    """Learned multi-slot lines (``_outcomes`` with costs); other lines are left out.

    Each line is checked before VW sees it, because VW's CCB parser and learner crash the process
    (not raise) on a slot left without an action or outcomes read before the actions: one outcome
    per slot, each naming an action of the line that its slot allows and no earlier slot took.
    The line VW learns is rewritten with ``c`` before ``_outcomes``. A bad line is a ValueError
    naming its number.
    """
    for number, text in enumerate(lines, 1):
        text = text.strip()
        if not text:
            continue
        data = json.loads(text)
        outcomes = data.get("_outcomes")
        if not outcomes or not isinstance(data.get("c"), dict) or "_slots" not in data["c"]:
            continue
        try:
            slots, actions = data["c"]["_slots"], len(data["c"].get("_multi", []))
            chosen = [int(o["_a"][0]) for o in outcomes]
            probability = [float(o["_p"][0]) for o in outcomes]
            reward = [-float(o["_label_cost"]) for o in outcomes]
            if len(slots) != len(outcomes):
                raise ValueError(f"{len(slots)} slots but {len(outcomes)} outcomes")
            for k, (slot, action) in enumerate(zip(slots, chosen)):
                if not 0 <= action < actions or action in chosen[:k] or action not in slot.get("_inc", [action]):
                    raise ValueError(f"slot {k}'s action {action} is not one it allows and no earlier slot took")
                if not 0 < probability[k] <= 1:
                    raise ValueError(f"slot {k}'s probability {probability[k]} is not in (0, 1]")
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise ValueError(f"line {number} is not a learned multi-slot (CCB DSJSON) line: {exc}") from None
        line = json.dumps({"c": data["c"], "_outcomes": outcomes})
        yield LoggedSlots(line, [o.get("_id", str(i)) for i, o in enumerate(outcomes)], chosen, probability, reward)


def _pinned(c: dict[str, object], slots: list[dict[str, object]], chosen: list[int], k: int) -> str:
    """The line predicting slot ``k`` with the slots before it pinned to their logged actions."""
    pinned = [{**slot, "_inc": [action]} for slot, action in zip(slots[:k], chosen[:k])]
    return json.dumps({"c": {**c, "_slots": pinned + [slots[k]]}})


def replay_slots(events: Sequence[LoggedSlots], args: Sequence[str], explorer: Explorer | None = None) -> list[list[float]]:
    """Per event, per slot: the target policy's probability of the logged action (before learning the event)."""
    model = SlotModel(list(args))
    out = []
    for event in events:
        data = json.loads(event.line)
        slots = data["c"]["_slots"]
        probabilities = []
        for k, action in enumerate(event.chosen):
            pmf = model.predict_slots(_pinned(data["c"], slots, event.chosen, k))[k]
            p = explorer.pmf([q for _, q in pmf]) if explorer is not None else [max(q, 0.0) for _, q in pmf]
            probabilities.append(next((pk for (a, _), pk in zip(pmf, p) if a == action), 0.0))
        out.append(probabilities)
        model.learn(event.line)
    return out


@dataclass
class SlotEstimate:
    policy: str
    slot: str
    events: int
    estimates: dict[str, float]
    intervals: dict[str, tuple[float, float]]


def evaluate_slots(events: Sequence[LoggedSlots], policies: Sequence[str], reps: int = 200, seed: int = 0,
                   settings: Settings | None = None) -> list[SlotEstimate]:
    """Rows per slot (by slot id, in the order slots first appear): the logged mean reward, then each
    policy's IPS and SNIPS with 95% bootstrap intervals, each policy served as the service would serve it."""
    settings = settings or Settings()
    if not events:
        raise ValueError("no learned multi-slot events to evaluate")
    order: list[str] = []
    for event in events:
        order.extend(s for s in event.slot_ids if s not in order)
    rows: list[SlotEstimate] = []
    rng = np.random.default_rng(seed)
    for slot in order:
        rewards = np.array([e.reward[e.slot_ids.index(slot)] for e in events if slot in e.slot_ids])
        boot = [float(rewards[rng.integers(len(rewards), size=len(rewards))].mean()) for _ in range(reps)]
        rows.append(SlotEstimate(ONLINE, slot, len(rewards), {"mean reward": float(rewards.mean())},
                                 {"mean reward": (float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5)))}))
    for policy in policies:
        args = Settings(multislot_learning_policy=policy).multislot_vw_args
        explorer = Explorer.for_policy(args, settings.exploration, settings.squarecb_actions)
        target = replay_slots(events, args, explorer)
        for slot in order:
            picked = [(e, t[e.slot_ids.index(slot)]) for e, t in zip(events, target) if slot in e.slot_ids]
            k = [e.slot_ids.index(slot) for e, _ in picked]
            data = Logged(reward=np.array([e.reward[i] for (e, _), i in zip(picked, k)]),
                          mu=np.array([e.probability[i] for (e, _), i in zip(picked, k)]),
                          pi=np.array([p for _, p in picked]), q=np.zeros(len(picked)), dm=np.zeros(len(picked)))
            names = ("ips", "snips")
            rows.append(SlotEstimate(policy, slot, len(picked), {"ips": ips(data), "snips": snips(data)},
                                     bootstrap_ci(data, names, reps=reps, seed=seed)))
    return rows


def format_slots_table(rows: Sequence[SlotEstimate]) -> str:
    """Plain text: per slot, the logged mean reward and each policy's IPS and SNIPS [95% interval]."""
    width = max(len(r.policy) for r in rows)
    slot_width = max(len(r.slot) for r in rows)
    lines = [f"{'slot':<{slot_width}}  {'policy':<{width}}  {'events':>6}  estimates"]
    for row in sorted(rows, key=lambda r: [x.slot for x in rows].index(r.slot)):
        cells = "  ".join(f"{name} {value:.4f} [{row.intervals[name][0]:.3f}, {row.intervals[name][1]:.3f}]"
                          for name, value in row.estimates.items())
        lines.append(f"{row.slot:<{slot_width}}  {row.policy:<{width}}  {row.events:>6}  {cells}")
    return "\n".join(lines)
