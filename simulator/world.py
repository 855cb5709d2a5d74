"""The simulated world: who visits when and in which context (shared), and how users respond (per policy).

``Traffic`` draws everything that does not depend on what was recommended (the visiting slot,
time of day, device, candidates, the random numbers of clicks, drift and churn), once per
event, for all policies. Each policy gets its own ``World`` whose users remember what that
policy showed them (satiation, boredom, history, churn), so policies are compared on the same
users and the same luck while their long-run effects stay their own.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from simulator.choice import attraction, clicks
from simulator.config import SimConfig
from simulator.items import GENRES, Catalog
from simulator.users import Population

__all__ = ["Visit", "Outcome", "Traffic", "World"]


@dataclass
class Visit:
    """One event's exogenous draws."""

    step: int
    slot: int
    time: int
    device: int
    candidates: np.ndarray  # item rows
    uniforms: np.ndarray  # one per slate slot (clicks)
    churn_uniform: float
    drift: np.ndarray  # (G,) standard normal


@dataclass
class Outcome:
    slate: np.ndarray  # item rows shown, top first
    clicked: np.ndarray  # bool per slate slot
    reward: float  # 1.0 when the top slot (the service's reward action) was clicked
    churned: bool
    recent_shown: np.ndarray  # (G,) genre counts of the user's last bubble_window shown items
    recent_consumed: np.ndarray  # (G,) same for consumed items


class Traffic:
    """The exogenous stream; the same seed gives the same visits."""

    def __init__(self, config: SimConfig, catalog: Catalog, population_size: int):
        self.config = config
        self.catalog = catalog
        self.population_size = population_size
        self.rng = np.random.default_rng([config.seed, 2])
        self.log_weight = config.run.popularity_bias * np.log(catalog.popularity)
        self.device_p = np.array(config.context.device_weights) / sum(config.context.device_weights)

    def visit(self, step: int) -> Visit:
        rng, run, cat = self.rng, self.config.run, self.catalog
        available = cat.arrival <= step
        fresh = np.flatnonzero(available & (cat.arrival > 0) & (cat.arrival > step - 1000))
        n_fresh = min(len(fresh), int(round(run.actions * run.fresh_share)))
        chosen_fresh = rng.choice(fresh, size=n_fresh, replace=False) if n_fresh else np.empty(0, dtype=np.int64)
        keys = self.log_weight + rng.gumbel(size=len(cat))  # Gumbel top-k = weighted sampling without replacement
        keys[~available] = -np.inf
        keys[chosen_fresh] = -np.inf
        rest = np.argpartition(-keys, run.actions - n_fresh)[: run.actions - n_fresh]
        candidates = np.concatenate([chosen_fresh, rest])
        rng.shuffle(candidates)
        return Visit(
            step=step,
            slot=int(rng.integers(self.population_size)),
            time=int(rng.integers(len(self.config.context.times))),
            device=int(rng.choice(len(self.device_p), p=self.device_p)),
            candidates=candidates,
            uniforms=rng.random(self.config.choice.slate_size),
            churn_uniform=float(rng.random()),
            drift=rng.standard_normal(len(GENRES)),
        )


class World:
    """The users as one policy has shaped them, and the ground truth of every action."""

    def __init__(self, config: SimConfig, catalog: Catalog, population: Population):
        self.config = config
        self.catalog = catalog
        self.population = population
        n = len(population)
        ctx_rng = np.random.default_rng([config.seed, 3])
        strength = config.context.strength
        self.time_shift = strength * ctx_rng.standard_normal((len(config.context.times), len(GENRES)))
        self.device_shift = strength * ctx_rng.standard_normal((len(config.context.devices), len(GENRES)))
        self.preferences = population.preferences.copy()
        self.true_segment = population.segments.copy()
        self.seen_segment = np.zeros(n, dtype=np.int64)
        self.taste = np.zeros((n, config.users.taste_factors))
        self.known_preferences = np.zeros((n, len(GENRES)))
        self.has_profile = np.zeros(n, dtype=bool)
        self.satiation = np.zeros((n, len(GENRES)))
        self.consumed: list[set[int]] = [set() for _ in range(n)]
        self.history: list[deque[int]] = [deque(maxlen=config.users.history_length) for _ in range(n)]
        self.shown_recent: list[deque[int]] = [deque(maxlen=config.run.bubble_window) for _ in range(n)]
        self.consumed_recent: list[deque[int]] = [deque(maxlen=config.run.bubble_window) for _ in range(n)]
        self.bad_sessions = np.zeros(n, dtype=np.int64)
        self.generation = np.zeros(n, dtype=np.int64)
        self.departures = 0
        for slot in range(n):
            self._arrive(slot, self.preferences[slot], int(self.true_segment[slot]))

    def _arrive(self, slot: int, preferences: np.ndarray, segment: int) -> None:
        """A user takes the slot: hidden taste and observed segment depend only on (seed, slot, generation)."""
        rng = np.random.default_rng([self.config.seed, 4, slot, int(self.generation[slot])])
        self.preferences[slot] = preferences
        self.true_segment[slot] = segment
        accurate = rng.random() < self.config.users.segment_accuracy
        self.seen_segment[slot] = segment if accurate else int(rng.integers(self.config.users.segments))
        self.taste[slot] = rng.standard_normal(self.config.users.taste_factors)
        noise = rng.standard_normal(len(GENRES))
        # the initial users come with their MovieLens ratings; newcomers have no past ratings
        self.has_profile[slot] = self.config.users.profile and self.generation[slot] == 0
        self.known_preferences[slot] = preferences + self.config.users.profile_noise * noise if self.has_profile[slot] \
            else 0.0
        self.satiation[slot] = 0.0
        self.consumed[slot] = set()
        self.history[slot].clear()
        self.shown_recent[slot].clear()
        self.consumed_recent[slot].clear()
        self.bad_sessions[slot] = 0

    def user_id(self, slot: int) -> str:
        return f"u{slot}-{int(self.generation[slot])}"

    def begin(self, visit: Visit) -> np.ndarray:
        """Start the visit (satiation wears off, interests drift); the true click probability of each candidate."""
        slot, dyn = visit.slot, self.config.dynamics
        self.satiation[slot] *= dyn.satiation_decay
        self.preferences[slot] += dyn.drift * visit.drift
        return self.attractions(visit)

    def attractions(self, visit: Visit) -> np.ndarray:
        """Ground truth: probability that each candidate is clicked when shown in the top slot."""
        cat, ch, slot = self.catalog, self.config.choice, visit.slot
        c = visit.candidates
        genres = cat.unit_genres[c]
        shift = self.time_shift[visit.time] + self.device_shift[visit.device]
        utility = (
            genres @ (ch.affinity_scale * self.preferences[slot] + shift - self.config.dynamics.satiation_strength
                      * self.satiation[slot])
            + ch.quality_scale * cat.quality[c]
            + ch.taste_scale * (cat.taste[c] @ self.taste[slot]) / np.sqrt(len(self.taste[slot]))
        )
        consumed = self.consumed[slot]
        if consumed:
            utility -= self.config.dynamics.repeat_penalty * np.fromiter((i in consumed for i in c), bool, len(c))
        return attraction(utility, ch.no_click_utility)

    def profile(self, slot: int) -> np.ndarray:
        """Genre profile of the user's recent consumption (what a client can know)."""
        recent = list(self.history[slot])
        return self.catalog.genres[recent].sum(axis=0) if recent else np.zeros(len(GENRES))

    def context_features(self, visit: Visit) -> list[dict]:
        """The Rank contextFeatures a client would send: segment, long-term profile, recent genres, time, device."""
        slot = visit.slot
        profile = self.profile(slot)
        total = profile.sum()
        history = {GENRES[g]: round(float(profile[g] / total), 4) for g in np.flatnonzero(profile)} if total else {}
        known = self.known_preferences[slot]
        ctx = self.config.context
        features: list[dict] = [{"user": {"segment": f"s{int(self.seen_segment[slot])}"}}]
        if self.has_profile[slot]:
            features.append({"profile": {g: round(float(v), 2) for g, v in zip(GENRES, known)}})
        features += [
            {"history": history},
            {"time": {"tod": ctx.times[visit.time]}},
            {"device": {"type": ctx.devices[visit.device]}},
        ]
        return features

    def respond(self, visit: Visit, ranking: np.ndarray, attractions: np.ndarray) -> Outcome:
        """The user sees the top of the ranking (candidate positions) and clicks; the world updates."""
        ch, dyn, slot = self.config.choice, self.config.dynamics, visit.slot
        top = ranking[: ch.slate_size]
        slate = visit.candidates[top]
        clicked = clicks(ch.model, attractions[top], visit.uniforms, ch.position_decay)
        self.shown_recent[slot].extend(int(i) for i in slate)
        for item in slate[clicked]:
            self.satiation[slot] += self.catalog.unit_genres[item]
            self.consumed[slot].add(int(item))
            self.history[slot].append(int(item))
            self.consumed_recent[slot].append(int(item))
        genres = self.catalog.genres
        recent_shown = genres[list(self.shown_recent[slot])].sum(axis=0)
        consumed_recent = list(self.consumed_recent[slot])
        recent_consumed = genres[consumed_recent].sum(axis=0) if consumed_recent else np.zeros(len(GENRES))
        churned = False
        if clicked.any():
            self.bad_sessions[slot] = 0
        else:
            self.bad_sessions[slot] += 1
            if self.bad_sessions[slot] >= dyn.churn_after and visit.churn_uniform < dyn.churn_probability:
                churned = True
                self.departures += 1
                self.generation[slot] += 1
                rng = np.random.default_rng([self.config.seed, 6, slot, int(self.generation[slot])])
                self._arrive(slot, *self.population.newcomer(rng))
        return Outcome(slate=slate, clicked=clicked, reward=float(clicked[0]), churned=churned,
                       recent_shown=recent_shown, recent_consumed=recent_consumed)
