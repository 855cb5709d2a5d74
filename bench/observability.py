"""What metrics and the access log cost a Rank and a Reward: `python bench/observability.py [--calls 2000]`.

In one process, through the Flask test client on SQLite (the full app: validation, VW, the durable
insert), with and without personalize/ops/logs.py's hooks.
(The service's own counter updates, ``ranked()`` and ``rewarded()``, run in both: their cost is
printed separately.)
Three variants, rotated call by call: no hooks; the hooks without the access log (timing, request
id, metrics); the hooks with one access line per request written to a file. Prints the median time
per call and the ratios to no hooks (target: within noise, <= 1.05), and the cost of the metric
updates alone, in multiprocess mode as `personalize serve` runs them.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any

ACTIONS = [{"id": f"item-{i}", "features": [{"item": {f"f{j}": round(0.1 * j + i, 3) for j in range(9)} | {"kind": f"k{i % 7}"}}]}
           for i in range(50)]
CONTEXT = [{"user": {"segment": "s1", "device": "mobile"}}, {"time": {"hour": 13}}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="Rank+Reward pairs per round")
    parser.add_argument("--rounds", type=int, default=6, help="rounds of each variant, alternating")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-observability-"))
    os.environ["PERSONALIZE_METRICS_DIR"] = str(folder / "metrics")

    from personalize.app import create_app
    from personalize.config import load_settings
    from personalize.ops import logs, metrics

    settings = load_settings({"data_dir": str(folder), "reward_wait_time": 600.0, "learner": "off"}, env={})
    metrics.prepare_dir(settings, clean=True)
    handler = logging.FileHandler(folder / "access.log")
    handler.setFormatter(logs.formatter("text"))
    logging.getLogger().addHandler(handler)
    logs.configure(settings)
    app = create_app(settings)
    client = app.test_client()
    hooks = (app.before_request_funcs[None][:], app.after_request_funcs[None][:])
    ours_before = [f for f in hooks[0] if f.__qualname__.startswith("install.<locals>.start")]
    ours_after = [f for f in hooks[1] if f.__qualname__.startswith("install.<locals>.finish")]
    assert ours_before and ours_after

    def use(variant: str) -> None:
        on = variant != "none"
        app.before_request_funcs[None] = hooks[0] if on else [f for f in hooks[0] if f not in ours_before]
        app.after_request_funcs[None] = hooks[1] if on else [f for f in hooks[1] if f not in ours_after]
        logs.access_log.disabled = variant != "metrics+log"  # (setLevel would clear every logger's level cache)

    body = {"contextFeatures": CONTEXT, "actions": ACTIONS}

    def pair() -> tuple[float, float]:
        start = time.perf_counter()
        event_id = client.post("/personalizer/v1.0/rank", json=body).json["eventId"]
        middle = time.perf_counter()
        client.post(f"/personalizer/v1.0/events/{event_id}/reward", json={"value": 1.0})
        return (middle - start) * 1e6, (time.perf_counter() - middle) * 1e6

    for _ in range(200):  # warm-up
        pair()
    variants = ("none", "metrics", "metrics+log")
    results: dict[str, list[tuple[float, float]]] = {v: [] for v in variants}
    for _ in range(args.rounds):
        times: dict[str, list[tuple[float, float]]] = {v: [] for v in variants}
        for i in range(len(variants) * args.calls):  # rotate call by call: drift and noise hit all alike
            variant = variants[i % len(variants)]
            use(variant)
            times[variant].append(pair())
        for variant, pairs in times.items():
            results[variant].append((statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)))
    print(f"median time per call (us; median over {args.rounds} rounds of each round's median of {args.calls} calls)")
    print(f"{'call':<8}{'no hooks':>10}{'metrics, request id':>22}{'ratio':>7}{'+ access log':>14}{'ratio':>7}")
    for i, name in enumerate(("rank", "reward")):
        none, hooked, logged = (statistics.median(r[i] for r in results[v]) for v in variants)
        print(f"{name:<8}{none:>10.1f}{hooked:>22.1f}{hooked / none:>7.3f}{logged:>14.1f}{logged / none:>7.3f}")
    m: Any = app.extensions["personalize"].metrics
    n = 100_000
    for label, statement in (("ranked()", lambda: m.ranked(False, True)),
                             ("rewarded()", lambda: m.rewarded(0.5)),
                             ("request()", lambda: m.request("/personalizer/v1.0/rank", "POST", 201, 0.003))):
        print(f"{label:<12} {timeit.timeit(statement, number=n) / n * 1e6:6.2f} us per call (multiprocess files)")
    lines = sum(1 for _ in open(folder / "access.log"))
    print(f"access log lines written: {lines}; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
