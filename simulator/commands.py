"""``personalize simulate run|sweep|ope`` (registered through the register_commands hook)."""

from __future__ import annotations

from pathlib import Path

import click

from personalize.cli_options import server_key, settings_from
from personalize.hookspecs import hookimpl

__all__ = ["simulate", "register_commands"]


def _config(config_file: str | None, seed: int | None, policies: str | None, settings: tuple[str, ...]):
    from simulator.config import ConfigError, load_config
    from simulator.sweep import parse_grid

    try:
        config = load_config(config_file)
        sections: dict = {}
        if seed is not None:
            sections["seed"] = seed
        run_changes = {}
        if policies:
            run_changes["policies"] = [p.strip() for p in policies.split(",") if p.strip()]
        if run_changes:
            sections["run"] = run_changes
        if settings:
            grid = parse_grid(settings)
            if len(grid) != 1:
                raise click.BadParameter("run takes one value per --set; use `simulate sweep` for grids")
            sections["service"] = grid[0]
            if "test" not in config.run.policies and "policies" not in run_changes:
                sections["run"] = {**run_changes, "policies": [*config.run.policies, "test"]}
        return config.with_overrides(**sections)
    except (ConfigError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None


@click.group("simulate")
def simulate() -> None:
    """Drive the service with simulated users: learning curves, regret, beyond-accuracy metrics, sweeps."""


@simulate.command("run")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
              help="Simulator TOML file (default: the MovieLens-calibrated world, see docs/simulator.md).")
@click.option("--events", default=20_000, show_default=True, help="Rank+Reward events per policy.")
@click.option("--seed", type=int, help="World seed (overrides the file's).")
@click.option("--out", type=click.Path(file_okay=False), default="simulation", show_default=True,
              help="Folder for metrics.json, curves.csv and the PNG plots.")
@click.option("--policies", help="Comma-separated policies, e.g. uniform,popularity,default,oracle.")
@click.option("--set", "settings", multiple=True, metavar="NAME=VALUE",
              help="Service setting for the 'test' policy (repeatable), e.g. --set exploration=0.1.")
@click.option("--url", help="Drive a live server (e.g. http://127.0.0.1:5000) instead of in-process services; "
              "sends the first key of PERSONALIZE_ADMIN_KEYS (else PERSONALIZE_API_KEYS) when set.")
def run_command(config_file: str | None, events: int, seed: int | None, out: str, policies: str | None,
                settings: tuple[str, ...], url: str | None) -> None:
    """Run every policy on the same simulated users and write metrics and plots."""
    import requests

    from simulator.runner import run, write_outputs
    from simulator.transport import TransportError

    config = _config(config_file, seed, policies, settings)
    out_dir = Path(out)
    key = server_key(settings_from(None, None, None)) if url else None
    try:
        result = run(config, events, out_dir / "services", url=url, progress=True, key=key)
    except (TransportError, requests.RequestException) as exc:  # a live server refused or is unreachable
        raise click.ClickException(f"the service at {url} cannot be driven: {exc}" if url else str(exc)) from None
    written = write_outputs(result, out_dir)
    oracle = result.summaries.get("oracle", {}).get("final_value")
    click.echo(f"{'policy':<11} {'CTR':>6} {'final':>6} {'regret':>8} {'divers':>6} {'novel':>5} {'seren':>6} "
               f"{'cover':>6}" + ("  final/oracle" if oracle else ""))
    for name, s in result.summaries.items():
        ratio = f"  {s['final_value'] / oracle:12.1%}" if oracle else ""
        click.echo(f"{name:<11} {s['ctr']:6.3f} {s['final_ctr']:6.3f} {s['cumulative_regret']:8.1f} "
                   f"{s['diversity']:6.3f} {s['novelty']:5.2f} {s['serendipity']:6.4f} {s['coverage']:6.3f}{ratio}")
    for name, rate in result.service_events_per_second.items():
        click.echo(f"service '{name}': {rate:,.0f} rank+reward events/s")
    click.echo("wrote " + ", ".join(str(p) for p in written))


@simulate.command("sweep")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False), help="Simulator TOML file.")
@click.option("--set", "settings", multiple=True, required=True, metavar="NAME=V1,V2,...",
              help="A service setting and its values (repeatable; the grid is every combination).")
@click.option("--events", default=5_000, show_default=True, help="Events per run.")
@click.option("--repeats", default=3, show_default=True, help="Runs per cell (seeds seed, seed+1, ...).")
@click.option("--jobs", default=2, show_default=True, help="Parallel processes.")
@click.option("--seed", type=int, help="First seed (overrides the file's).")
@click.option("--objective", type=click.Choice(["reward", "tradeoff"]), default="reward", show_default=True,
              help="'reward': mean expected reward; 'tradeoff': reward + weighted diversity and serendipity.")
@click.option("--diversity-weight", default=0.05, show_default=True, help="Weight of diversity in 'tradeoff'.")
@click.option("--serendipity-weight", default=1.0, show_default=True, help="Weight of serendipity in 'tradeoff'.")
@click.option("--out", type=click.Path(file_okay=False), default="sweep", show_default=True,
              help="Folder for sweep.txt, sweep.csv and sweep.json.")
def sweep_command(config_file: str | None, settings: tuple[str, ...], events: int, repeats: int, jobs: int,
                  seed: int | None, objective: str, diversity_weight: float, serendipity_weight: float,
                  out: str) -> None:
    """Run a grid of service settings on the same worlds and rank them, naming the recommended one."""
    from personalize.config import SettingsError
    from simulator.sweep import Objective, format_table, parse_grid, sweep, write_sweep

    config = _config(config_file, seed, None, ())
    try:
        grid = parse_grid(settings)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    goal = Objective(diversity_weight, serendipity_weight) if objective == "tradeoff" else Objective()
    try:
        cells = sweep(config, grid, events, repeats, jobs, goal, progress=True)
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    write_sweep(cells, goal, Path(out))
    click.echo(format_table(cells, goal))


@simulate.command("ope")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False), help="Simulator TOML file.")
@click.option("--events", default=50_000, show_default=True, help="Evaluation events logged by the service.")
@click.option("--train", default=10_000, show_default=True,
              help="Earlier logged events that train the frozen VW targets (not evaluated on).")
@click.option("--seed", type=int, help="World seed.")
@click.option("--exploration", default=1.0, show_default=True,
              help="Exploration of the logging service (1 = uniform logging, the most overlap with any target).")
@click.option("--target", "targets", multiple=True, help="Frozen VW policy to estimate (repeatable; "
              "default: a documented set).")
@click.option("--jobs", default=2, show_default=True, help="Processes for the VW targets and the reward model.")
@click.option("--out", type=click.Path(file_okay=False), default="ope-validation", show_default=True,
              help="Folder for the logging service's database and the DSJSON log.")
def ope_command(config_file: str | None, events: int, train: int, seed: int | None, exploration: float,
                targets: tuple[str, ...], jobs: int, out: str) -> None:
    """Check the off-policy estimators against the simulator's ground truth (relative error per estimator)."""
    from simulator.ope_validation import FROZEN_TARGETS, format_report, log_with_truth, validate

    config = _config(config_file, seed, None, ())
    log = log_with_truth(config, train + events, Path(out), {"exploration": exploration}, progress=True)
    click.echo(format_report(validate(log, Path(out), train, targets or FROZEN_TARGETS, jobs=jobs)))


@simulate.command("homepage")
@click.option("--events", default=5_000, show_default=True, help="Visits per policy.")
@click.option("--window", default=250, show_default=True, help="Visits per point of the curves.")
@click.option("--seed", default=0, show_default=True, help="Seed of the visits and clicks.")
@click.option("--out", type=click.Path(file_okay=False), default="homepage", show_default=True,
              help="Folder for homepage.json and homepage.png.")
@click.option("--apprentice-until", type=click.IntRange(min=0),
              help="Also run the service in Apprentice mode (the baseline page, learning from its clicks) and switch "
                   "it to Online after this many visits.")
def homepage_command(events: int, window: int, seed: int, out: str, apprentice_until: int | None) -> None:
    """Multi-slot: a homepage with a hero and two side slots (position bias), filled by the service's
    multi-slot Rank against the editors' baseline page, uniform and the oracle (and, with
    --apprentice-until, the service moving from Apprentice to Online)."""
    from simulator.homepage import run_homepage, write_homepage

    if events < window or window < 1:
        raise click.BadParameter("--events must be at least --window, and --window at least 1", param_hint="--events")
    if apprentice_until is not None and apprentice_until > events:
        raise click.BadParameter("must be at most --events", param_hint="--apprentice-until")
    result = run_homepage(events, window, seed, Path(out), progress=lambda name: click.echo(f"running {name}...", err=True),
                          apprentice_until=apprentice_until)
    written = write_homepage(result, Path(out))
    oracle = result.summaries["oracle"]["final_clicks_per_visit"]
    click.echo(f"{'policy':<10} {'clicks/visit':>12} {'last 20%':>9} {'hero':>6} {'left':>6} {'right':>6} {'/oracle':>8}")
    for name, s in result.summaries.items():
        click.echo(f"{name:<10} {s['clicks_per_visit']:12.3f} {s['final_clicks_per_visit']:9.3f} {s['final_hero']:6.3f} "
                   f"{s['final_left']:6.3f} {s['final_right']:6.3f} {s['final_clicks_per_visit'] / oracle:8.1%}")
    click.echo("wrote " + ", ".join(str(p) for p in written))


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(simulate)
