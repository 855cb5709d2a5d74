"""Fit time of generators on about 1M interactions: MovieLens-small replicated with renamed users.

    python bench/fit_scale.py [--interactions 1000000] [--generator svd --generator item2vec]

Each replica of the 100,836 ratings gets its own users (``r3:42``) and keeps the items, so the
catalog stays 9,742 movies while users and interactions grow; timestamps shift by a day per
replica. ``popular`` is fitted in the same run as the baseline of the ratios (the machine is
shared and noisy); CPU seconds (all threads of the process) are less sensitive to other load
than wall seconds, since svd and item2vec fit on one core. Peak resident memory is printed at the end.
"""

from __future__ import annotations

import argparse
import resource
import time

from threadpoolctl import threadpool_limits

from personalize.catalog import TrainingData
from personalize.movielens import load_movies, load_ratings
from personalize.plugins import make_generator


def replicated(interactions: int) -> TrainingData:
    ratings = load_ratings()
    copies = -(-interactions // len(ratings))
    rows = [(f"r{c}:{user}", item, value, ts + c * 86_400.0)
            for c in range(copies) for user, item, value, ts in ratings][:interactions]
    return TrainingData.build(((m["id"], m["features"], m["created_at"], True) for m in load_movies()), rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interactions", type=int, default=1_000_000)
    parser.add_argument("--generator", dest="names", action="append", help="Generator to fit (repeatable) [default: svd, item2vec].")
    args = parser.parse_args()
    threadpool_limits(1, "blas")
    data = replicated(args.interactions)
    print(f"{len(data.values):,} interactions, {len(data.user_ids):,} users, {len(data.item_ids):,} items")
    timings = {}
    for name in ["popular", *(args.names or ["svd", "item2vec"])]:
        generator = make_generator(name)
        start, cpu = time.perf_counter(), time.process_time()
        generator.fit(data)
        timings[name] = time.perf_counter() - start
        cpu = time.process_time() - cpu
        print(f"{name:<10} fit {timings[name]:7.1f} s wall, {cpu:7.1f} s CPU  "
              f"({timings[name] / max(timings['popular'], 1e-9):,.0f}x popular's wall)", flush=True)
    print(f"peak memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")


if __name__ == "__main__":
    main()
