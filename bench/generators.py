"""Candidate generators on MovieLens-small: fit time and per-user candidate latency (p50/p95).

    python bench/generators.py [--users 300] [--n 50]

Targets: candidates for one user p50 <= 5 ms per generator; fitting all generators <= 60 s.
The ``popular`` generator (a bincount lookup) is the in-run baseline for the latency ratios.
"""

from __future__ import annotations

import argparse
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
    args = parser.parse_args()
    threadpool_limits(1, "blas")  # as in the service (CandidateEngine.load)
    data = TrainingData.build(((m["id"], m["features"], m["created_at"], True) for m in load_movies()), load_ratings())
    print(f"MovieLens-small: {len(data.item_ids)} items, {len(data.user_ids)} users, {len(data.values)} ratings; n={args.n}")
    rng = np.random.default_rng(0)
    users = [data.user_ids[i] for i in rng.choice(len(data.user_ids), size=min(args.users, len(data.user_ids)), replace=False)]
    rows = []
    total_fit = 0.0
    for name in generator_classes():
        generator = make_generator(name)
        start = time.perf_counter()
        generator.fit(data)
        fit = time.perf_counter() - start
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
    print(f"fit all generators: {total_fit:.1f} s (target <= 60 s: {'ok' if total_fit <= 60 else 'SLOW'})")


if __name__ == "__main__":
    main()
