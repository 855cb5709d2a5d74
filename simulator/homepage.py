"""A multi-slot scenario: a news homepage with a hero slot and two side slots, and position bias.

Simulated readers of a few segments arrive one at a time; the page shows 3 of 12 articles (4
categories x 3), one per slot. A reader clicks an article shown in slot ``k`` with probability
``position_bias[k] x appeal(segment, article)``: the hero is seen far more than the side slots,
so the same article earns more clicks there. The policies:

- ``service``: the real service's multi-slot Rank and Reward (in process, inline learner, simulated
  clock), each slot rewarded 1 for a click and 0 otherwise;
- ``baseline``: every slot shows its ``baselineAction`` (the editors' fixed page: what Personalizer's
  Apprentice mode would answer);
- ``uniform``: distinct random articles;
- ``oracle``: knows the appeal: fills the hero with the reader's most appealing article, then the sides;
- ``apprentice`` (with ``apprentice_until``): the same service started in Personalizer's Apprentice mode
  (it answers the baseline page and learns from its clicks) and switched to Online through the service
  configuration after ``apprentice_until`` visits, as an operator would once the model looks ready.

Every policy meets the same readers in the same order. ``run_homepage`` returns per-window click rates
per slot; ``write_homepage`` writes ``homepage.json`` and the ``homepage.png`` plot.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import orjson

__all__ = ["Homepage", "HomepageResult", "run_homepage", "write_homepage", "POLICIES", "DEFAULT_POLICIES"]

POLICIES = ("service", "baseline", "uniform", "oracle", "apprentice")
#: The policies run unless told otherwise (``apprentice`` needs a switch point).
DEFAULT_POLICIES = POLICIES[:4]
CATEGORIES = ("politics", "sport", "culture", "tech")
SEGMENTS = {"commuter": {"politics": 0.30, "tech": 0.20}, "fan": {"sport": 0.45, "culture": 0.10},
            "reader": {"culture": 0.35, "politics": 0.15}, "geek": {"tech": 0.40, "sport": 0.10}}
DEVICES = ("mobile", "desktop")


@dataclass(frozen=True)
class Homepage:
    """The page: articles, slots (with their features and baselines) and the position bias."""

    position_bias: tuple[float, ...] = (1.0, 0.35, 0.3)
    articles: tuple[str, ...] = tuple(f"{c}-{i}" for c in CATEGORIES for i in range(3))
    slots: tuple[dict[str, Any], ...] = (
        {"id": "hero", "features": [{"slot": {"size": "large", "position": "top"}}], "baselineAction": "politics-0"},
        {"id": "left", "features": [{"slot": {"size": "small", "position": "side"}}], "baselineAction": "sport-0"},
        {"id": "right", "features": [{"slot": {"size": "small", "position": "side"}}], "baselineAction": "tech-0"},
    )

    def appeal(self, segment: str, device: str, article: str) -> float:
        """Click probability of an article seen in the hero; the first of each category is the day's lead."""
        category, _, n = article.partition("-")
        lead = 0.05 if n == "0" else 0.0
        long_on_mobile = -0.03 if device == "mobile" and n == "2" else 0.0
        return max(SEGMENTS[segment].get(category, 0.03) + lead + long_on_mobile, 0.0)

    def click_rate(self, segment: str, device: str, slot: int, article: str) -> float:
        return self.position_bias[slot] * self.appeal(segment, device, article)

    def actions(self) -> list[dict[str, Any]]:
        return [{"id": a, "features": [{"article": {"category": a.partition("-")[0], "lead": a.endswith("-0"),
                                                    "long": a.endswith("-2")}}]} for a in self.articles]


@dataclass
class HomepageResult:
    events: int
    window: int
    seed: int
    curves: dict[str, list[dict[str, float]]]  # policy -> per window: events, ctr per slot, page clicks per visit
    summaries: dict[str, dict[str, float]] = field(default_factory=dict)
    apprentice_until: int | None = None  # when the apprentice policy was switched to Online

    def as_json(self) -> dict[str, Any]:
        return {"events": self.events, "window": self.window, "seed": self.seed, "policies": self.summaries,
                "apprenticeUntil": self.apprentice_until, "curves": self.curves}


def _service_policy(page: Homepage, folder: Path, clock: Callable[[], float],
                    learning_mode: str = "Online") -> Callable[[str, str, str], list[str]]:
    """The real service's multi-slot Rank/Reward (Rank and Reward skip only WSGI, as simulator.transport does);
    ``choose.set_mode(mode)`` changes the learning mode through the stored service configuration."""
    from personalize.api._common import decode_body
    from personalize.app import create_app
    from personalize.config import load_settings

    folder.mkdir(parents=True, exist_ok=True)
    database = folder / f"homepage-{learning_mode.lower()}.db"
    database.unlink(missing_ok=True)
    settings = load_settings({"database_url": f"sqlite:///{database}", "learner": "inline",
                              "reward_wait_time": 3600.0, "learning_mode": learning_mode}, env={})
    app = create_app(settings, clock=clock)
    service = app.extensions["personalize"]
    actions, slots = page.actions(), list(page.slots)

    def choose(event_id: str, segment: str, device: str) -> list[str]:
        body = {"eventId": event_id, "contextFeatures": [{"user": {"segment": segment, "device": device}}],
                "actions": actions, "slots": slots}
        answer = service.rank_multislot(decode_body(orjson.dumps(body)))
        return [s["rewardActionId"] for s in answer["slots"]]

    def reward(event_id: str, clicks: list[float]) -> None:
        body = {"reward": [{"slotId": s["id"], "value": c} for s, c in zip(slots, clicks)]}
        service.reward_multislot(event_id, decode_body(orjson.dumps(body)))

    def set_mode(mode: str) -> None:
        service.store_configuration(lambda current: replace(current, learning_mode=mode))

    choose.reward = reward  # type: ignore[attr-defined]
    choose.set_mode = set_mode  # type: ignore[attr-defined]
    choose.close = service.close  # type: ignore[attr-defined]
    return choose


def run_homepage(events: int = 5000, window: int = 250, seed: int = 0, out: Path = Path("homepage"),
                 policies: tuple[str, ...] | None = None, page: Homepage | None = None,
                 progress: Callable[[str], None] | None = None, apprentice_until: int | None = None) -> HomepageResult:
    """Every policy on the same ``events`` visits; click rates per slot per ``window`` visits. With
    ``apprentice_until``, the ``apprentice`` policy runs too: Apprentice for that many visits, then Online."""
    if policies is None:
        policies = DEFAULT_POLICIES + (("apprentice",) if apprentice_until is not None else ())
    if "apprentice" in policies and apprentice_until is None:
        raise ValueError("the apprentice policy needs apprentice_until (the visit at which it switches to Online)")
    page = page or Homepage()
    visits_rng = random.Random(seed)
    visits = [(visits_rng.choice(list(SEGMENTS)), visits_rng.choice(DEVICES)) for _ in range(events)]
    curves: dict[str, list[dict[str, float]]] = {}
    summaries: dict[str, dict[str, float]] = {}
    n_slots = len(page.slots)
    for name in policies:
        if progress:
            progress(name)
        rng = random.Random(seed * 7919 + POLICIES.index(name))
        now = [1_700_000_000.0]
        service = None
        if name in ("service", "apprentice"):
            mode = "Apprentice" if name == "apprentice" else "Online"
            service = _service_policy(page, out / "services", lambda: now[0], mode)
        rows: list[dict[str, float]] = []
        clicks = [0.0] * n_slots
        total = [0.0] * n_slots
        try:
            for i, (segment, device) in enumerate(visits):
                if name == "apprentice" and i == apprentice_until:
                    service.set_mode("Online")  # type: ignore[union-attr]
                if service is not None:
                    shown = service(f"{seed}-{i}", segment, device)
                elif name == "baseline":
                    shown = [s["baselineAction"] for s in page.slots]
                elif name == "uniform":
                    shown = rng.sample(list(page.articles), n_slots)
                else:  # oracle
                    shown = []
                    for k in range(n_slots):
                        options = [a for a in page.articles if a not in shown]
                        shown.append(max(options, key=lambda a: page.click_rate(segment, device, k, a)))
                clicked = [float(rng.random() < page.click_rate(segment, device, k, a)) for k, a in enumerate(shown)]
                if service is not None:
                    service.reward(f"{seed}-{i}", clicked)  # type: ignore[attr-defined]
                now[0] += 1.0
                for k in range(n_slots):
                    clicks[k] += clicked[k]
                    total[k] += clicked[k]
                if (i + 1) % window == 0:
                    rows.append({"events": i + 1, **{page.slots[k]["id"]: clicks[k] / window for k in range(n_slots)},
                                 "page": sum(clicks) / window})
                    clicks = [0.0] * n_slots
        finally:
            if service is not None:
                service.close()  # type: ignore[attr-defined]
        curves[name] = rows
        tail = rows[-max(1, len(rows) // 5):]
        summaries[name] = {"clicks_per_visit": sum(total) / events,
                           "final_clicks_per_visit": sum(r["page"] for r in tail) / len(tail),
                           **{f"final_{s['id']}": sum(r[s["id"]] for r in tail) / len(tail) for s in page.slots}}
    return HomepageResult(events, window, seed, curves, summaries, apprentice_until)


_STYLE = {"oracle": dict(color="black", linestyle="--"), "uniform": dict(color="grey", linestyle=":"),
          "baseline": dict(color="tab:orange"), "service": dict(color="tab:blue", linewidth=2.2),
          "apprentice": dict(color="tab:green", linewidth=1.8)}


def write_homepage(result: HomepageResult, out: Path) -> list[Path]:
    """``homepage.json`` and ``homepage.png`` (clicks per visit on the page and per slot, over time)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    data = out / "homepage.json"
    data.write_text(json.dumps(result.as_json(), indent=2))
    slots = [k for k in next(iter(result.curves.values()))[0] if k not in ("events", "page")]
    fig, axes = plt.subplots(1, 1 + len(slots), figsize=(5 * (1 + len(slots)), 4.6), sharex=True)
    for ax, key in zip(axes, ["page", *slots]):
        for name, rows in result.curves.items():
            final = result.summaries[name]["final_clicks_per_visit" if key == "page" else f"final_{key}"]
            ax.plot([r["events"] for r in rows], [r[key] for r in rows], label=f"{name} ({final:.3f})",
                    **_STYLE.get(name, {}))
        if result.apprentice_until is not None:
            ax.axvline(result.apprentice_until, color="tab:green", linestyle=":", linewidth=1)
        ax.set(title="whole page: clicks per visit" if key == "page" else f"slot '{key}': click rate",
               xlabel="visits")
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    switch = ("" if result.apprentice_until is None
              else f"; apprentice: Apprentice mode until visit {result.apprentice_until} (dotted line), then Online")
    fig.suptitle(f"Homepage, 3 slots with position bias {Homepage().position_bias}: per {result.window} visits "
                 f"(legend: last 20%){switch}")
    fig.tight_layout()
    plot = out / "homepage.png"
    fig.savefig(plot, dpi=100)
    plt.close(fig)
    return [data, plot]
