"""Feature ceiling: how close to the oracle can a policy get from what a Rank call carries?

The default MovieLens world (50 inline candidates) is run for ``--visits`` events per world,
driven by a fixed policy (``--driver``: the oracle, whose lane it reproduces exactly, or
uniform), for ``--worlds`` seeds starting at ``--seed``. Every visit keeps the Rank body's
features (contextFeatures and each action's features, vectorized exactly as the client sends
them), every candidate's true top-slot click probability (its attraction), and the world's
hidden state (true current preferences, satiation, consumed items, hidden taste, cold items'
quality).

Models are then fitted offline with *full information* (all 50 candidates of a visit labelled
with their true value, no bandit problem; ``--train-actions`` random candidates per visit keep
the fit fast) on the first ``1 - --test-share`` of each world's events, and each model's
greedy policy is evaluated on the last ``--test-share`` (the runner's "final" window) by true
value: the attraction of its top pick, which is the top slot's click probability under both
position models. The oracle's value is the best attraction; with the
oracle driver it is exactly the oracle lane's "final value" of ``bench/learning_curves.py``.
``popularity`` is the runner's policy (catalog rating counts plus the clicks seen in the
driven world), ``uniform`` the mean attraction.

Rows:

* ``rank -q ca``: ridge over the action features plus every context x action cross, the class
  VW's ``-q ca`` learns in (first-order context terms are shared by all actions and cannot
  change a ranking); target = click probability (what the service regresses) or its logit
  (the utility, a monotone transform: same ranking, linear in the truth);
* ``+ unit genres``: the same with each genre sent as 1/sqrt(#genres) instead of 1 (the world
  scores items by the unit genre vector);
* ``bandit info``: the same class fitted on one uniformly random candidate per training visit
  and its 0/1 click (what an ideal learner of uniformly explored logs could do);
* ``boosting``: sklearn gradient-boosted trees on the raw context and action vectors (a
  nonlinear class, no crosses given);
* ``+ hidden X``: ``rank -q ca + unit genres, target logit`` plus a hidden quantity (crossed
  with the action features when it is per user, a direct term when it is per candidate), to
  show how much of the gap each explains; ``oracle - taste`` ranks by the true utility
  without the hidden taste;
* ``closed loop: X`` (oracle driver only): the fitted model, frozen, drives a world of its own
  from the first event (same seed, same traffic) like a runner lane; its value over the last
  ``--test-share`` divided by the oracle lane's is exactly the "share of the oracle" that
  ``bench/learning_curves.py`` reports for the service (72.5 % at seed 0).

Usage (about 4.5 minutes on 2 cores)::

    python bench/feature_ceiling.py --visits 20000 --seed 0 --worlds 2
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor

from simulator.config import SimConfig, load_config
from simulator.items import GENRES, Catalog, build_catalog
from simulator.policies import Popularity
from simulator.users import build_population
from simulator.world import Traffic, World

G = len(GENRES)
PROFILE_ROW = "held-out visits by users with a profile (share)"


@dataclass
class Sample:
    """One world's visits: Rank features, truth and hidden state (V visits x K candidates)."""

    context: np.ndarray  # (V, C) contextFeatures as numbers
    actions: np.ndarray  # (V, K, A) action features as numbers (genres 0/1, stats.pop, stats.rating)
    unit_genres: np.ndarray  # (V, K, G) genre vectors scaled to unit length
    attraction: np.ndarray  # (V, K) true top-slot click probability
    popularity: np.ndarray  # (V, K) score of the runner's popularity policy
    preferences: np.ndarray  # (V, G) the user's true current genre preferences
    satiation: np.ndarray  # (V, G)
    consumed: np.ndarray  # (V, K) 1 if the user already consumed the candidate
    taste: np.ndarray  # (V, K) hidden per user-item taste term (std-dev 1)
    quality: np.ndarray  # (V, K) item quality, also for cold items (which send no stats)
    utility_no_taste: np.ndarray  # (V, K) true utility without the taste term
    has_profile: np.ndarray  # (V,) 1 if the client sends a profile (users present from the start)
    chosen: np.ndarray  # (V,) true value of the driver's top pick (its lane's per-event value)

    def take(self, visits: np.ndarray, candidates: np.ndarray | None = None) -> "Sample":
        """The given visits, and per visit only the given candidate positions (an (len(visits), m) array)."""
        out = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)[visits]
            if candidates is not None and name not in _PER_VISIT:
                value = value[np.arange(len(visits))[:, None], candidates]
            out[name] = value
        return Sample(**out)


_PER_VISIT = ("context", "preferences", "satiation", "has_profile", "chosen")


def _vocabulary(config: SimConfig) -> tuple[dict[str, int], dict[str, int]]:
    """Feature name -> column, for the context and the action features the simulated client sends."""
    ctx = [f"user.segment=s{s}" for s in range(config.users.segments)]
    ctx += [f"profile.{g}" for g in GENRES] + [f"history.{g}" for g in GENRES]
    ctx += [f"time.tod={t}" for t in config.context.times] + [f"device.type={d}" for d in config.context.devices]
    act = [f"genres.{g}" for g in GENRES] + ["stats.pop", "stats.rating"]
    return {n: i for i, n in enumerate(ctx)}, {n: i for i, n in enumerate(act)}


def vectorize(features: list[dict], vocabulary: dict[str, int]) -> np.ndarray:
    """A Rank feature list as VW reads it: strings are one-hot ``name=value``, numbers are values."""
    out = np.zeros(len(vocabulary))
    for group in features:
        for namespace, values in group.items():
            for key, value in values.items():
                if isinstance(value, str):
                    out[vocabulary[f"{namespace}.{key}={value}"]] = 1.0
                else:
                    out[vocabulary[f"{namespace}.{key}"]] = float(value)
    return out


# A fitted model as a policy: (one-visit sample) -> (1, K) scores.
Scorer = Callable[[Sample], np.ndarray]


def simulate(config: SimConfig, visits: int, driver: str | Scorer) -> Sample:
    """Run one world driven by ``driver`` ('oracle', 'uniform' or a model's greedy picks); keep every visit."""
    catalog: Catalog = build_catalog(config.items, config.users, config.seed)
    population = build_population(config.users, config.seed)
    world, traffic = World(config, catalog, population), Traffic(config, catalog, len(population))
    ctx_vocab, act_vocab = _vocabulary(config)
    item_vectors = np.array([vectorize(f, act_vocab) for f in catalog.features])
    popularity = Popularity("popularity", catalog)
    rng = np.random.default_rng([config.seed, 7])  # the runner's uniform policy stream
    ch, dyn = config.choice, config.dynamics
    rows: dict[str, list[np.ndarray]] = {k: [] for k in Sample.__dataclass_fields__}
    for step in range(visits):
        visit = traffic.visit(step)
        att = world.begin(visit)
        slot, c = visit.slot, visit.candidates
        shift = world.time_shift[visit.time] + world.device_shift[visit.device]
        taste = catalog.taste[c] @ world.taste[slot] / np.sqrt(world.taste.shape[1])
        consumed = np.fromiter((int(i) in world.consumed[slot] for i in c), float, len(c))
        genres = catalog.unit_genres[c]
        no_taste = (genres @ (ch.affinity_scale * world.preferences[slot] + shift
                              - dyn.satiation_strength * world.satiation[slot])
                    + ch.quality_scale * catalog.quality[c] - dyn.repeat_penalty * consumed)
        assert np.allclose(np.log(att / (1 - att)) + ch.no_click_utility, no_taste + ch.taste_scale * taste)
        for key, value in (
            ("context", vectorize(world.context_features(visit), ctx_vocab)), ("actions", item_vectors[c]),
            ("unit_genres", genres), ("attraction", att), ("popularity", popularity.score[c].copy()),
            ("preferences", world.preferences[slot].copy()), ("satiation", world.satiation[slot].copy()),
            ("consumed", consumed), ("taste", taste), ("quality", catalog.quality[c]),
            ("utility_no_taste", no_taste), ("has_profile", float(world.has_profile[slot])), ("chosen", 0.0),
        ):
            rows[key].append(value)
        if driver == "oracle":
            ranking = np.argsort(-att, kind="stable")
        elif driver == "uniform":
            ranking = rng.permutation(len(c))
        else:
            scores = driver(Sample(**{k: np.array(v[-1:]) for k, v in rows.items()}))[0]
            ranking = np.argsort(-scores, kind="stable")
        rows["chosen"][-1] = att[ranking[0]]
        outcome = world.respond(visit, ranking, att)
        popularity.learn(visit, world, ranking, outcome)
    return Sample(**{k: np.array(v) for k, v in rows.items()})


# A block maps a sample to per-visit (V, d) or per-candidate (V, K, d) features.
Block = Callable[[Sample], np.ndarray]


def _per_visit(name: str) -> Block:
    return lambda s: getattr(s, name)


def _per_candidate(name: str) -> Block:
    return lambda s: getattr(s, name)[..., None]


def _rank_actions(s: Sample) -> np.ndarray:
    return s.actions


def _unit_actions(s: Sample) -> np.ndarray:
    return np.concatenate([s.unit_genres, s.actions[..., G:]], axis=2)


@dataclass
class FeatureSet:
    """Linear model: action terms + context x action crosses (VW's ``-q ca``) + direct per-candidate terms."""

    action: Block
    context: list[Block]
    direct: list[Block]

    def parts(self, s: Sample) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Action terms with a constant (V, K, A), context (V, C), direct terms (V, K, D).

        The constant makes the crosses include the context's own terms and an intercept: they
        cannot change a ranking but, as in VW, they absorb each visit's level.
        """
        a = self.action(s)
        a = np.concatenate([np.ones(a.shape[:2] + (1,)), a], axis=2)
        c = np.concatenate([b(s) for b in self.context], axis=1)
        direct = np.concatenate([b(s) for b in self.direct], axis=2) if self.direct else np.zeros(a.shape[:2] + (0,))
        return a, c, direct

    def design(self, s: Sample) -> np.ndarray:
        """(V, K, d) rows of the visits' candidates: action terms, context x action crosses, direct terms."""
        a, c, direct = self.parts(s)
        crosses = (c[:, None, :, None] * a[:, :, None, :]).reshape(a.shape[0], a.shape[1], -1)
        return np.concatenate([a, crosses, direct], axis=2)

    def scores(self, s: Sample, weights: np.ndarray) -> np.ndarray:
        """(V, K) scores of ``design(s) @ weights``, without building the crossed rows."""
        a, c, direct = self.parts(s)
        n_a, n_c = a.shape[2], c.shape[1]
        per_visit = weights[:n_a] + c @ weights[n_a:n_a + n_c * n_a].reshape(n_c, n_a)
        return np.einsum("vka,va->vk", a, per_visit) + direct @ weights[n_a + n_c * n_a:]


def fit_ridge(x: np.ndarray, y: np.ndarray, strength: float = 1e-5) -> np.ndarray:
    """Ridge weights for rows ``x`` (n, d) and targets ``y``, penalty relative to the mean feature energy."""
    gram = x.T @ x
    gram[np.diag_indices_from(gram)] += strength * max(float(np.trace(gram)) / len(gram), 1e-12)
    return np.linalg.solve(gram, x.T @ y)


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def greedy_value(scores: np.ndarray, attraction: np.ndarray) -> float:
    """Mean true value of each visit's top-scored candidate."""
    top = np.argmax(scores, axis=1)
    return float(attraction[np.arange(len(top)), top].mean())


def evaluate_world(s: Sample, test_share: float, train_actions: int, seed: int
                   ) -> tuple[dict[str, float], dict[str, Scorer]]:
    """Every row's held-out value in one world, and the fitted linear models as policies."""
    n, k = s.attraction.shape
    split = int(round(n * (1 - test_share)))
    rng = np.random.default_rng([seed, 100])
    # full information, but a random subset of each training visit's candidates keeps the fit fast
    picks = np.argsort(rng.random((split, k)), axis=1)[:, :train_actions]
    train, test = s.take(np.arange(split), picks), s.take(np.arange(split, n))
    att = test.attraction
    values: dict[str, float] = {
        PROFILE_ROW: float(test.has_profile.mean()),
        "uniform": float(att.mean()),
        "popularity": greedy_value(test.popularity, att),
        "oracle": float(att.max(axis=1).mean()),
        "oracle - taste (knows all but the hidden taste)": greedy_value(test.utility_no_taste, att),
    }

    models: dict[str, Scorer] = {}

    def linear(name: str, fs: FeatureSet, target: str = "logit") -> None:
        x = fs.design(train).reshape(split * train_actions, -1)
        y = train.attraction.reshape(-1)
        w = fit_ridge(x, logit(y) if target == "logit" else y)
        values[name] = greedy_value(fs.scores(test, w), att)
        models[name] = lambda one: fs.scores(one, w)

    ctx = [_per_visit("context")]
    rank = FeatureSet(_rank_actions, ctx, [])
    unit = FeatureSet(_unit_actions, ctx, [])
    linear("rank -q ca, target click prob (service's class)", rank, "prob")
    linear("rank -q ca, target logit", rank)
    linear("rank -q ca + unit genres, target click prob", unit, "prob")
    linear("rank -q ca + unit genres, target logit", unit)

    # bandit information: one uniformly random candidate per training visit and its realized 0/1 click
    shown = s.take(np.arange(split), rng.integers(k, size=(split, 1)))
    clicks = (rng.random(split) < shown.attraction[:, 0]).astype(float)
    w = fit_ridge(unit.design(shown)[:, 0], clicks, 1e-2)
    values["rank -q ca + unit genres, bandit info (1 random click/visit)"] = greedy_value(unit.scores(test, w), att)

    def raw(part: Sample) -> np.ndarray:
        visits, m = part.attraction.shape
        rows = np.concatenate([np.repeat(part.context[:, None], m, 1), _unit_actions(part)], axis=2)
        return rows.reshape(visits * m, -1)

    boost = HistGradientBoostingRegressor(max_iter=300, learning_rate=0.1, max_leaf_nodes=63, random_state=seed)
    boost.fit(raw(train), logit(train.attraction.reshape(-1)))
    values["boosting on raw rank features, target logit"] = greedy_value(
        boost.predict(raw(test)).reshape(att.shape), att)

    hidden: dict[str, tuple[list[Block], list[Block]]] = {
        "+ hidden: true current preferences": ([_per_visit("preferences")], []),
        "+ hidden: satiation": ([_per_visit("satiation")], []),
        "+ hidden: consumed flag (repeat penalty)": ([], [_per_candidate("consumed")]),
        "+ hidden: cold items' quality": ([], [_per_candidate("quality")]),
        "+ hidden: all of the above": ([_per_visit("preferences"), _per_visit("satiation")],
                                       [_per_candidate("consumed"), _per_candidate("quality")]),
        "+ hidden: all of the above + taste": ([_per_visit("preferences"), _per_visit("satiation")],
                                               [_per_candidate("consumed"), _per_candidate("quality"),
                                                _per_candidate("taste")]),
    }
    for name, (extra_ctx, direct) in hidden.items():
        linear(name, FeatureSet(_unit_actions, ctx + extra_ctx, direct))
    return values, models


#: Fitted models that also drive a world of their own from the first event (a fixed policy, its lane's final value).
CLOSED_LOOP = ("rank -q ca, target click prob (service's class)", "rank -q ca + unit genres, target logit",
               "+ hidden: consumed flag (repeat penalty)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visits", type=int, default=20_000, help="events simulated per world")
    parser.add_argument("--seed", type=int, default=0, help="first world's seed")
    parser.add_argument("--worlds", type=int, default=2, help="worlds (seeds seed, seed+1, ...)")
    parser.add_argument("--driver", choices=("oracle", "uniform"), default="oracle",
                        help="fixed policy whose choices shape the users (satiation, history, churn)")
    parser.add_argument("--test-share", type=float, default=0.1, help="last share of events held out")
    parser.add_argument("--train-actions", type=int, default=5, help="labelled candidates per training visit")
    args = parser.parse_args()
    per_world: list[dict[str, float]] = []
    for seed in range(args.seed, args.seed + args.worlds):
        started = time.perf_counter()
        config = load_config().with_overrides(seed=seed)
        sample = simulate(config, args.visits, args.driver)
        simulated = time.perf_counter() - started
        values, models = evaluate_world(sample, args.test_share, args.train_actions, seed)
        fitted = time.perf_counter() - started - simulated
        if args.driver == "oracle":  # the oracle world's oracle is the oracle lane: its final value is the reference
            split = int(round(args.visits * (1 - args.test_share)))
            for name in CLOSED_LOOP:
                lane = simulate(config, args.visits, models[name])
                values[f"closed loop: {name}"] = float(lane.chosen[split:].mean())
        per_world.append(values)
        print(f"world seed {seed}: simulated {simulated:.0f} s, fitted {fitted:.0f} s, closed loop "
              f"{time.perf_counter() - started - simulated - fitted:.0f} s", flush=True)
    seeds = [f"seed {s}" for s in range(args.seed, args.seed + args.worlds)]
    print(f"\n{args.visits} events per world, driven by {args.driver}; held out: last {args.test_share:.0%}; "
          f"value = mean true click probability of the top pick")
    print(f"{'policy':<66}" + "".join(f"{s:>9}" for s in seeds) + f"{'% oracle':>10}")
    for name in per_world[0]:
        share = np.mean([w[name] / w["oracle"] for w in per_world])
        shown = "" if name == PROFILE_ROW else f"{share:>10.1%}"
        print(f"{name:<66}" + "".join(f"{w[name]:>9.4f}" for w in per_world) + shown)


if __name__ == "__main__":
    main()
