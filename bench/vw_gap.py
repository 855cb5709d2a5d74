"""Several VW learning policies side by side in the simulator, in one process (one lane each).

Each ``--lane`` is an in-process service with its own settings, on the same users and visits
as the oracle (and LinUCB with ``--linucb``), so their values compare directly. Used to find
why VW learns less than LinUCB from the same Rank features (see docs/simulator.md).

Usage::

    python bench/vw_gap.py --events 5000 --knobs \\
        --lane "default=--cb_explore_adf --squarecb --cb_type mtr -q ca -l 2" \\
        --lane "clip1=--cb_explore_adf --squarecb --cb_type mtr -q ca -l 2 --clip_p 1" \\
        --lane "greedy=--cb_explore_adf --epsilon 0 --cb_type mtr -q ca -l 2;exploration=0"

A lane is ``name=learning policy`` optionally followed by ``;setting=value`` service settings
(e.g. ``exploration=0``, ``learn_every=1``; ``learn_every`` defaults to the world's 10).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from simulator import config as sim_config
from simulator import runner
from simulator.config import load_config
from simulator.runner import run


def parse_lane(spec: str) -> tuple[str, dict]:
    name, _, rest = spec.partition("=")
    policy, *settings = rest.split(";")
    overrides: dict = {"learning_policy": policy.strip()} if policy.strip() else {}
    for item in settings:
        key, _, value = item.partition("=")
        overrides[key.strip()] = value.strip()
    return name.strip(), overrides


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--knobs", action="store_true",
                        help="[items] genre_weights='unit' and [users] consumed_flag=true")
    parser.add_argument("--linucb", action="store_true", help="add the MABWiser LinUCB lane (slow)")
    parser.add_argument("--lane", action="append", default=[], help="name=policy[;setting=value...]")
    parser.add_argument("--out", default="bench/results/vw-gap")
    parser.add_argument("--json", help="append one JSON line per lane to this file")
    args = parser.parse_args()

    lanes = dict(parse_lane(spec) for spec in args.lane)
    for name, overrides in lanes.items():  # register each lane as a service-backed policy
        runner.SERVICE_POLICIES[name] = overrides
    sim_config.POLICIES = (*sim_config.POLICIES, *lanes)
    sections: dict = {"seed": args.seed,
                      "run": {"policies": [*lanes, *(["linucb"] if args.linucb else []), "oracle"]}}
    if args.knobs:
        sections["items"] = {"genre_weights": "unit"}
        sections["users"] = {"consumed_flag": True}
    config = load_config().with_overrides(**sections)
    result = run(config, args.events, Path(args.out) / "services", progress=True)
    s = result.summaries
    oracle = s["oracle"]["final_value"]
    features = "knobs" if args.knobs else "default"
    rows = []
    print(f"| lane | features | events | run value | final value | share of oracle |")
    print("|---|---|---:|---:|---:|---:|")
    for name, summary in s.items():
        row = {"lane": name, "policy": lanes.get(name, {}), "features": features, "events": args.events,
               "seed": args.seed, "value": summary["value"], "final_value": summary["final_value"],
               "share": summary["final_value"] / oracle}
        rows.append(row)
        print(f"| {name} | {features} | {args.events} | {row['value']:.4f} | {row['final_value']:.4f} "
              f"| {row['share']:.1%} |")
    for name, lane in lanes.items():
        print(f"  {name}: {lane}")
    if args.json:
        with open(args.json, "a") as fh:
            for row in rows:
                fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
