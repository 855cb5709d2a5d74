"""OPE against ground truth: log N events with the service in the simulator, estimate other policies.

Prints each estimator's relative error per target policy, and the worst error of each
estimator over the VW targets (targets: DR <= 5%, IPS <= 10% at 50,000 events).

Usage::

    python bench/ope_validation.py --events 50000 --exploration 0.2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from personalize.evaluation.estimators import ESTIMATORS
from simulator.config import load_config
from simulator.ope_validation import DEFAULT_TARGETS, format_report, log_with_truth, validate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--exploration", type=float, default=0.2, help="Exploration of the logging service.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bootstrap", type=int, default=100)
    args = parser.parse_args()
    config = load_config().with_overrides(seed=args.seed)
    with tempfile.TemporaryDirectory(prefix="ope-validation-") as folder:
        started = time.perf_counter()
        log = log_with_truth(config, args.events, Path(folder), {"exploration": args.exploration}, progress=True)
        logged = time.perf_counter() - started
        results = validate(log, DEFAULT_TARGETS, reps=args.bootstrap)
    print(f"{len(log.events)} events logged with exploration={args.exploration} in {logged:.0f}s")
    print(format_report(results))
    vw_targets = [r for r in results if r.policy in DEFAULT_TARGETS]
    print("worst relative error over the VW targets: " + ", ".join(
        f"{name} {100 * max(r.relative_error(name) for r in vw_targets):.1f}%" for name in ESTIMATORS))


if __name__ == "__main__":
    main()
