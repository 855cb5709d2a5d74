"""Candidate generators on MovieLens-small: fit time and per-user candidate latency (p50/p95).

    python bench/generators.py [--users 300] [--n 50] [--generator svd --generator item2vec]

Every registered generator is measured: ``embedding`` proposes nothing here (MovieLens items have
no vectors; bench/ann.py measures it), and ``text_embedding`` (with the ``embeddings`` extra)
encodes the 9,742 movies' text in its fit.

Targets: candidates for one user p50 <= 5 ms per generator; fitting all generators <= 60 s;
a full Rank call by userId (hybrid candidates + bandit, through the Flask app, event logged
in SQLite) p50 <= 15 ms. The ``popular`` generator (a bincount lookup) is the in-run baseline
for the generator latency ratios; a Rank call with 50 inline actions is the baseline for the
full Rank call.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
from threadpoolctl import threadpool_limits

from personalize.catalog import TrainingData
from personalize.generator import CandidateRequest
from personalize.movielens import load_movies, load_ratings
from personalize.plugins import generator_classes, make_generator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=300, help="Users sampled for the latency measurement.")
    parser.add_argument("--n", type=int, default=50, help="Candidates per call (numCandidates).")
    parser.add_argument("--generator", dest="names", action="append",
                        help="Measure only this generator (repeatable; popular, the baseline, always runs) and skip the "
                             "full Rank call [default: every registered generator and the Rank call].")
    args = parser.parse_args()
    threadpool_limits(1, "blas")  # as in the service (CandidateEngine.load)
    data = TrainingData.build(((m["id"], m["features"], m["created_at"], True) for m in load_movies()), load_ratings())
    print(f"MovieLens-small: {len(data.item_ids)} items, {len(data.user_ids)} users, {len(data.values)} ratings; n={args.n}")
    rng = np.random.default_rng(0)
    users = [data.user_ids[i] for i in rng.choice(len(data.user_ids), size=min(args.users, len(data.user_ids)), replace=False)]
    rows = []
    total_fit = 0.0
    for name in ["popular", *args.names] if args.names else generator_classes():
        generator = make_generator(name)
        start = time.perf_counter()
        generator.fit(data)
        fit = time.perf_counter() - start
        if generator.fit_by_default:  # what `personalize train` fits; the others only when named
            total_fit += fit
        generator.candidates(CandidateRequest(users[0]), args.n)  # warm-up
        latencies = []
        for seed, user in enumerate(users):
            start = time.perf_counter()
            generator.candidates(CandidateRequest(user, seed=seed), args.n)
            latencies.append((time.perf_counter() - start) * 1000)
        rows.append((name, fit, float(np.percentile(latencies, 50)), float(np.percentile(latencies, 95))))
    base = next(p50 for name, _, p50, _ in rows if name == "popular")
    print(f"{'generator':<14} {'fit s':>7} {'p50 ms':>8} {'p95 ms':>8} {'p50 vs popular':>15}  target p50 <= 5 ms")
    for name, fit, p50, p95 in rows:
        print(f"{name:<14} {fit:>7.2f} {p50:>8.2f} {p95:>8.2f} {p50 / base:>14.1f}x  {'ok' if p50 <= 5 else 'SLOW'}")
    if args.names:
        return
    print(f"fit all default generators: {total_fit:.1f} s (target <= 60 s: {'ok' if total_fit <= 60 else 'SLOW'})")
    named = [name for name in generator_classes() if not generator_classes()[name].fit_by_default]
    if named:
        print(f"  not included (fitted only when named): {', '.join(named)}")
    rank_by_user(users, args.n)


def rank_by_user(users: list[str], n: int) -> None:
    """p50 of a full Rank call by userId through the app, against Rank with 50 inline actions."""
    from personalize.app import create_app
    from personalize.catalog import add_interactions, parse_interaction, parse_item, upsert_items
    from personalize.config import load_settings

    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(load_settings({"data_dir": tmp, "generators": "hybrid", "generator_refresh_interval": 0}, env={}), start=False)
        service = app.extensions["personalize"]
        movies = load_movies()
        with service.sessions() as session:
            upsert_items(session, [parse_item({"id": m["id"], "features": m["features"]}) for m in movies])
            add_interactions(session, [parse_interaction({"userId": u, "itemId": i, "type": "rating", "value": v, "timestamp": t})
                                       for u, i, v, t in load_ratings()])
            session.commit()
        client = app.test_client()
        start = time.perf_counter()
        assert client.post("/personalizer/v1.0/rank", json={"userId": users[0]}).status_code == 201
        print(f"first Rank by userId (fits and stores the generators): {time.perf_counter() - start:.1f} s")
        inline = [{"id": m["id"], "features": [{"item": m["features"]}]} for m in movies[:n]]
        timings: dict[str, list[float]] = {"inline": [], "user": []}
        for user in users:
            for kind, body in (("inline", {"actions": inline}), ("user", {"userId": user, "numCandidates": n})):
                t0 = time.perf_counter()
                response = client.post("/personalizer/v1.0/rank", json=body)
                timings[kind].append((time.perf_counter() - t0) * 1000)
                assert response.status_code == 201, response.json
        service.close()
    by_user, inline_p50 = float(np.percentile(timings["user"], 50)), float(np.percentile(timings["inline"], 50))
    print(f"Rank by userId (hybrid + bandit, {n} candidates): p50 {by_user:.2f} ms, p95 {np.percentile(timings['user'], 95):.2f} ms; "
          f"{by_user / inline_p50:.1f}x a Rank with {n} inline actions (p50 {inline_p50:.2f} ms); "
          f"target p50 <= 15 ms: {'ok' if by_user <= 15 else 'SLOW'}")


if __name__ == "__main__":
    main()
