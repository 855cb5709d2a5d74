"""The ``embedding`` generator on a large synthetic catalog: HNSW (usearch) against exact NumPy search.

    python bench/ann.py [--items 1000000] [--dim 64] [--users 2000] [--queries 300] [--n 50]

Target: candidates for one user p50 <= 5 ms with 1,000,000 items of 64 dimensions. Prints, for
the approximate index and for exact brute-force search over the same vectors in the same run:
fit time (the index build), resident memory added by the fitted generator, p50/p99 latency of
``candidates`` for users (profile of their latest items, their seen items excluded) and for a
current item, recall@10 of the index against the exact answer, and the stored model's size.

The vectors are clustered (a mixture of Gaussians), as real embeddings are; uniformly random
vectors in 64 dimensions have no near neighbours to find and are reported too with ``--uniform``.
"""

from __future__ import annotations

import argparse
import os
import pickle
import time
from dataclasses import replace

import numpy as np
from threadpoolctl import threadpool_limits

from personalize.catalog import TrainingData
from personalize.generator import CandidateRequest
from personalize.vectors import VectorConfig
from plugins.embedding import EmbeddingGenerator


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:")) / 1024


def synthetic(items: int, dim: int, users: int, per_user: int, uniform: bool, seed: int = 0) -> TrainingData:
    """``items`` vectors in ``items // 1000`` clusters; each user interacts with items of two clusters."""
    rng = np.random.default_rng(seed)
    clusters = max(items // 1000, 1)
    assignment = rng.integers(0, clusters, items)
    if uniform:
        vectors = rng.standard_normal((items, dim), dtype=np.float32)
    else:
        centres = rng.standard_normal((clusters, dim), dtype=np.float32)
        vectors = centres[assignment] + 0.5 * rng.standard_normal((items, dim), dtype=np.float32)
    by_cluster = np.argsort(assignment, kind="stable")
    starts = np.searchsorted(assignment[by_cluster], np.arange(clusters + 1))
    picks = []
    for _ in range(users):  # per_user items, half from each of two clusters
        for cluster in rng.integers(0, clusters, 2):
            members = by_cluster[starts[cluster]:starts[cluster + 1]]
            picks.append(rng.choice(members, per_user // 2, replace=len(members) < per_user // 2))
    items_col = np.concatenate(picks)
    users_col = np.repeat(np.arange(users, dtype=np.int32), per_user)
    return TrainingData(
        item_ids=tuple(f"i{i}" for i in range(items)),
        item_features=({},) * items,
        item_created=np.zeros(items),
        item_active=np.ones(items, dtype=bool),
        user_ids=tuple(f"u{u}" for u in range(users)),
        users=users_col,
        items=items_col.astype(np.int32),
        values=np.ones(len(users_col)),
        timestamps=rng.random(len(users_col)),
        item_vectors=vectors,
    )


def timed(generator: EmbeddingGenerator, requests: list[CandidateRequest], n: int) -> tuple[list[list[str]], np.ndarray]:
    generator.candidates(requests[0], n)  # warm-up
    answers, latencies = [], []
    for request in requests:
        start = time.perf_counter()
        answers.append([c.item_id for c in generator.candidates(request, n)])
        latencies.append((time.perf_counter() - start) * 1000)
    return answers, np.array(latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--users", type=int, default=2000, help="Users with history (20 items each).")
    parser.add_argument("--queries", type=int, default=300, help="Requests timed per kind.")
    parser.add_argument("--n", type=int, default=50, help="Candidates per call (numCandidates).")
    parser.add_argument("--uniform", action="store_true", help="Uniformly random vectors instead of clusters.")
    args = parser.parse_args()
    threadpool_limits(1, "blas")  # as in the service (CandidateEngine.load)
    print(f"load average before: {os.getloadavg()}")
    data = synthetic(args.items, args.dim, args.users, 20, args.uniform)
    print(f"{args.items:,} items x {args.dim} dims ({'uniform' if args.uniform else 'clustered'}), "
          f"{args.users:,} users x 20 interactions; n={args.n}")
    rng = np.random.default_rng(1)
    users = [CandidateRequest(f"u{u}", seed=i) for i, u in enumerate(rng.choice(args.users, args.queries, replace=False))]
    current = [CandidateRequest(None, current_item=f"i{i}") for i in rng.choice(args.items, args.queries, replace=False)]

    results = {}
    for label, config in (("exact", replace(VectorConfig(), ann_min_items=args.items + 1)), ("hnsw", VectorConfig())):
        before = rss_mb()
        generator = EmbeddingGenerator(config)
        start = time.perf_counter()
        generator.fit(data)
        fit = time.perf_counter() - start
        memory = rss_mb() - before
        user_answers, user_ms = timed(generator, users, args.n)
        item_answers, item_ms = timed(generator, current, args.n)
        start = time.perf_counter()
        stored = generator.save()
        save_s = time.perf_counter() - start
        start = time.perf_counter()
        pickle.loads(stored)
        load_s = time.perf_counter() - start
        results[label] = dict(fit=fit, memory=memory, user_ms=user_ms, item_ms=item_ms, users=user_answers,
                              items=item_answers, size=len(stored) / 1e6, save=save_s, load=load_s)
        del stored, generator

    def recall(kind: str) -> float:
        return float(np.mean([len(set(a[:10]) & set(e[:10])) / max(len(e[:10]), 1)
                              for a, e in zip(results["hnsw"][kind], results["exact"][kind])]))

    print(f"{'search':<7} {'fit s':>7} {'RSS +MB':>8} {'model MB':>9} {'save/load s':>12}"
          f" {'user p50':>9} {'user p99':>9} {'item p50':>9} {'item p99':>9}   (ms)")
    for label, r in results.items():
        print(f"{label:<7} {r['fit']:>7.1f} {r['memory']:>8.0f} {r['size']:>9.0f} {r['save']:>5.1f}/{r['load']:<6.1f}"
              f" {np.percentile(r['user_ms'], 50):>9.2f} {np.percentile(r['user_ms'], 99):>9.2f}"
              f" {np.percentile(r['item_ms'], 50):>9.2f} {np.percentile(r['item_ms'], 99):>9.2f}")
    hnsw_p50, exact_p50 = np.percentile(results["hnsw"]["user_ms"], 50), np.percentile(results["exact"]["user_ms"], 50)
    print(f"user p50: hnsw {hnsw_p50:.2f} ms = {exact_p50 / hnsw_p50:.0f}x faster than exact "
          f"(target <= 5 ms: {'ok' if hnsw_p50 <= 5 else 'SLOW'})")
    print(f"recall@10 of hnsw vs exact: users {recall('users'):.3f}, current item {recall('items'):.3f}")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
