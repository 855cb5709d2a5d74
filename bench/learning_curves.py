"""Learning-curve targets in the default MovieLens-calibrated world, and in-process throughput.

Targets (50 inline actions per decision, 20,000 events): the service's default policy reaches
>= 85% of the oracle's value, >= 1.3x popularity, and at least matches MABWiser's LinUCB;
the simulator sustains >= 1,000 rank+reward events/s through the in-process service.
"Final" values are the mean expected reward over the last 10% of events.

Usage::

    python bench/learning_curves.py --events 20000 --out bench-sim
"""

from __future__ import annotations

import argparse
from pathlib import Path

from simulator.config import load_config
from simulator.runner import run, write_outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench-sim")
    parser.add_argument("--throughput-events", type=int, default=5_000,
                        help="events of a second run with the service alone, for the throughput row (0: skip)")
    args = parser.parse_args()
    config = load_config().with_overrides(
        seed=args.seed, run={"policies": ["uniform", "popularity", "default", "linucb", "oracle"]})
    result = run(config, args.events, Path(args.out) / "services", progress=True)
    write_outputs(result, Path(args.out))
    s = result.summaries
    final = {name: summary["final_value"] for name, summary in s.items()}
    for name, summary in s.items():
        print(f"{name:<11} run value {summary['value']:.4f}  final value {final[name]:.4f}  "
              f"final CTR {summary['final_ctr']:.4f} [{summary['final_ctr_low']:.4f}, {summary['final_ctr_high']:.4f}]")
    print(f"default / oracle     {final['default'] / final['oracle']:.1%}   (target >= 85%)")
    print(f"default / popularity {final['default'] / final['popularity']:.2f}x  (target >= 1.3x)")
    run_value = {name: summary["value"] for name, summary in s.items()}
    print(f"default / linucb     {run_value['default'] / run_value['linucb']:.3f}x over the whole budget, "
          f"{final['default'] / final['linucb']:.3f}x over the last 10%  (target >= 1.0x)")
    print(f"in-process service beside {len(s) - 1} other policies: {result.service_events_per_second['default']:,.0f} "
          f"rank+reward events/s; whole run {args.events / result.seconds:,.1f} events/s")
    if args.throughput_events:
        # The other lanes share the process (caches, allocator, garbage collector) and slow the service's
        # calls down by up to 2x; alone, the run measures the service as the simulator drives it.
        alone = run(config.with_overrides(run={"policies": ["default"]}), args.throughput_events,
                    Path(args.out) / "services-alone")
        print(f"in-process service alone ({args.throughput_events:,} events): "
              f"{alone.service_events_per_second['default']:,.0f} rank+reward events/s (target >= 1,000); "
              f"whole run {args.throughput_events / alone.seconds:,.0f} events/s")


if __name__ == "__main__":
    main()
