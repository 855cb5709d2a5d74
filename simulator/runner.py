"""A simulation run: every policy meets the same visits, in lockstep, each in its own copy of the world."""

from __future__ import annotations

import dataclasses
import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from simulator.config import SimConfig
from simulator.generator_mode import CatalogLoader, initial_interactions
from simulator.items import Catalog, build_catalog
from simulator.mabwiser_policy import LinUCB
from simulator.metrics import Recorder
from simulator.policies import Oracle, Policy, Popularity, Service, Uniform
from simulator.transport import Http, InProcess, SimClock, Transport
from simulator.users import Population, build_population
from simulator.world import Traffic, World

__all__ = ["RunResult", "run", "write_outputs", "SERVICE_POLICIES"]

#: Service-backed policies and the settings they override on the service defaults.
SERVICE_POLICIES: dict[str, dict[str, Any]] = {"greedy": {"exploration": 0.0}, "default": {}, "test": {}}


@dataclass
class RunResult:
    seed: int
    events: int
    window: int
    summaries: dict[str, dict[str, float]]
    curves: dict[str, list[dict[str, float]]]
    seconds: float
    service_events_per_second: dict[str, float] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"seed": self.seed, "events": self.events, "window": self.window, "seconds": self.seconds,
                "service_events_per_second": self.service_events_per_second, "policies": self.summaries}


@dataclass
class _Lane:
    policy: Policy
    world: World
    recorder: Recorder
    seconds: float = 0.0


def _policy(name: str, config: SimConfig, catalog: Catalog, world: World, folder: Path, url: str | None,
            key: str | None, clock: SimClock, run_id: str) -> Policy:
    generators = config.run.mode == "generators"
    if name == "uniform":
        return Uniform(name, config.seed)
    if name == "popularity":
        return Popularity(name, catalog)
    if name == "oracle":
        return Oracle(name, catalog, whole_catalog=generators)
    if name == "linucb":
        return LinUCB(name, config, catalog)
    transport: Transport
    if url:
        transport = Http(url, key=key)
    else:
        overrides = config.service if name == "test" else SERVICE_POLICIES[name]
        # no background refits in a simulation: they would follow wall time, not events
        extra = {"generator_refresh_interval": 0.0} if generators else {}
        transport = InProcess(folder / name, {"learn_every": config.run.learn_every, **extra, **overrides}, clock)
    loader = None
    if generators:
        loader = CatalogLoader(transport, catalog)
        loader.load(initial_interactions(config, catalog, world))
    return Service(name, transport, catalog, run_id, loader, config.run.actions, config.run.refit_every,
                   config.users.consumed_flag)


def run(config: SimConfig, events: int, folder: Path, url: str | None = None, progress: bool = False,
        catalog: Catalog | None = None, population: Population | None = None, key: str | None = None) -> RunResult:
    """Run ``events`` visits through every configured policy; service databases go under ``folder``.

    With ``url`` there is one live server, hence one service policy: the run keeps the first of
    greedy/default/test that is configured and names it after the server's settings; ``key`` is the
    API key it sends (an admin key when the run loads a catalog).
    """
    catalog = catalog or build_catalog(config.items, config.users, config.seed)
    population = population or build_population(config.users, config.seed)
    names = list(config.run.policies)
    if url:
        service_names = [n for n in names if n in SERVICE_POLICIES]
        names = [n for n in names if n not in SERVICE_POLICIES or n == service_names[0]]
    clock = SimClock()
    run_id = f"sim{config.seed}" if url is None else f"sim{config.seed}-{secrets.token_hex(4)}"
    lanes = []
    for name in names:
        world = World(config, catalog, population)
        lanes.append(_Lane(_policy(name, config, catalog, world, folder, url, key, clock, run_id), world,
                           Recorder(catalog, events, config.run.serendipity_threshold)))
    traffic = Traffic(config, catalog, len(population))
    started = time.perf_counter()
    try:
        for step in tqdm(range(events), disable=not progress, unit="event", desc="simulate"):
            clock.now += 1.0
            visit = traffic.visit(step)
            for lane in lanes:
                attractions = lane.world.begin(visit)
                profile = lane.world.profile(visit.slot)
                t0 = time.perf_counter()
                propose = getattr(lane.policy, "propose", None)  # optional: a policy's own candidates
                own = propose(visit, lane.world) if propose else None
                seen = visit
                if own is not None:
                    seen = dataclasses.replace(visit, candidates=own)
                    attractions = lane.world.attractions(seen)
                ranking, probabilities = lane.policy.rank(seen, lane.world, attractions)
                t1 = time.perf_counter()
                outcome = lane.world.respond(seen, ranking, attractions)
                t2 = time.perf_counter()
                lane.policy.learn(seen, lane.world, ranking, outcome)
                lane.seconds += (t1 - t0) + (time.perf_counter() - t2)
                lane.recorder.record(seen, profile, probabilities, attractions, outcome)
    finally:
        for lane in lanes:
            lane.policy.close()
    seconds = time.perf_counter() - started
    window = config.run.window or max(1, events // 40)
    return RunResult(
        seed=config.seed, events=events, window=window,
        summaries={lane.policy.name: lane.recorder.summary() for lane in lanes},
        curves={lane.policy.name: lane.recorder.curves(window) for lane in lanes},
        seconds=seconds,
        service_events_per_second={lane.policy.name: events / lane.seconds for lane in lanes
                                   if isinstance(lane.policy, Service) and lane.seconds > 0},
    )


def write_outputs(result: RunResult, out: Path) -> list[Path]:
    """metrics.json, curves.csv and the plots; returns the files written."""
    from simulator.plots import write_plots

    out.mkdir(parents=True, exist_ok=True)
    metrics = out / "metrics.json"
    metrics.write_text(json.dumps(result.as_json(), indent=2, sort_keys=False) + "\n")
    curves = out / "curves.csv"
    columns = list(next(iter(result.curves.values()))[0])
    with open(curves, "w") as fh:
        fh.write(",".join(["policy", *columns]) + "\n")
        for name, rows in result.curves.items():
            for row in rows:
                fh.write(",".join([name, *(f"{row[c]:.6g}" for c in columns)]) + "\n")
    return [metrics, curves, *write_plots(result, out)]
