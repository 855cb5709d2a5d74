"""OPE against ground truth: log events with the service in the simulator, estimate fixed target policies.

The service (exploration ``--exploration``) logs ``--train`` + ``--events`` decisions; the first
``--train`` train the frozen VW targets, the last ``--events`` are the evaluation log. Prints
each estimator's relative error per target and the max/mean over the fixed targets (targets:
DR <= 5%, IPS <= 10% at 50,000 events).

Usage::

    python bench/ope_validation.py --events 50000 --train 10000 --exploration 1.0 --jobs 2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pickle
import time
from pathlib import Path

from simulator.config import load_config
from simulator.ope_validation import format_report, log_with_truth, summary, validate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000, help="Evaluation log size.")
    parser.add_argument("--train", type=int, default=10_000, help="Earlier events that train the frozen VW targets.")
    parser.add_argument("--exploration", type=float, default=1.0, help="Exploration of the logging service.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", default="bench-ope", help="Folder for the service database and log.pkl.")
    parser.add_argument("--reuse", action="store_true", help="Estimate again from --out/log.pkl instead of logging.")
    args = parser.parse_args()
    config = load_config().with_overrides(seed=args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if args.reuse:
        with open(out / "log.pkl", "rb") as fh:
            log = pickle.load(fh)
    else:
        log = log_with_truth(config, args.train + args.events, out, {"exploration": args.exploration}, progress=True)
        with open(out / "log.pkl", "wb") as fh:
            pickle.dump(log, fh)
    logged = time.perf_counter() - started
    results = validate(log, out, args.train, reps=args.bootstrap, jobs=args.jobs)
    estimated = time.perf_counter() - started - logged
    print(f"{len(log.events) - args.train} evaluation events (after {args.train} training events) logged with "
          f"exploration={args.exploration} in {logged:.0f}s; estimated in {estimated:.0f}s")
    print(format_report(results))
    (out / "results.json").write_text(json.dumps([dataclasses.asdict(r) for r in results], indent=1) + "\n")
    s = summary(results)
    print(f"fixed targets: worst DR {100 * s['dr'][0]:.1f}% (target <= 5%), worst IPS {100 * s['ips'][0]:.1f}% "
          f"(target <= 10%)")


if __name__ == "__main__":
    main()
