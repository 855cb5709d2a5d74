"""The ``personalize evaluate`` command (registered through the register_commands hook)."""

from __future__ import annotations

import json
from typing import Iterator

import click

from personalize.cli_options import open_database, parse_time, settings_from, settings_options
from personalize.config import Settings
from personalize.hookspecs import hookimpl

__all__ = ["evaluate_command", "register_commands", "store_lines"]


def store_lines(settings: Settings, since: float | None, until: float | None, multislot: bool = False) -> Iterator[str]:
    """DSJSON lines of the learned events in the service's store, in the order they were learned
    (the multi-slot events' CCB lines with ``multislot``)."""
    from personalize.dsjson import event_line, multislot_line
    from personalize.store import iter_events

    database = open_database(settings, create=False)  # a missing store is an error, not a new empty one
    try:
        with database.read() as session:
            for event in iter_events(session, since=since, until=until, multislot=multislot):  # learned events only
                if multislot:
                    yield multislot_line(event, event.learned_slot_rewards)
                else:
                    yield event_line(event, event.learned_reward)
    finally:
        database.dispose()


@click.command("evaluate")
@click.option("--policy", "policies", multiple=True, required=True,
              help='VW learning policy to estimate, e.g. "--cb_explore_adf --epsilon 0.1 -q ::" (repeatable). '
                   "It is evaluated as the service would serve it: with the service's exploration floor and "
                   "squarecb_actions settings (from --config / PERSONALIZE_*).")
@click.option("--logs", type=click.Path(exists=True, dir_okay=False),
              help="A DSJSON file (personalize logs export --format dsjson); default: the service's own store.")
@click.option("--since", help="First event time (UNIX seconds or ISO date), store only.")
@click.option("--until", help="End of the window (exclusive), store only.")
@click.option("--bootstrap", default=200, show_default=True, help="Bootstrap resamples for the 95% intervals.")
@click.option("--seed", default=0, show_default=True, help="Bootstrap seed.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--multislot", is_flag=True,
              help="Evaluate multi-slot policies (--ccb_explore_adf) on the multi-slot events, slot by slot (IPS, SNIPS).")
@settings_options
def evaluate_command(policies: tuple[str, ...], logs: str | None, since: str | None, until: str | None,
                     bootstrap: int, seed: int, as_json: bool, multislot: bool, config_file: str | None,
                     database_url: str | None, data_dir: str | None) -> None:
    """Estimate what other learning policies would have earned on the logged events.

    Each policy is replayed through a fresh VW on the events in the order the service learned
    them, and its value is estimated with IPS, SNIPS, DM, DR, SNDR and Switch-DR (95% bootstrap
    intervals), beside the online policy's actual mean reward.
    """
    from personalize.evaluation.evaluate import evaluate, format_table
    from personalize.evaluation.replay import parse_dsjson

    settings = settings_from(config_file, database_url, data_dir)
    if multislot:
        _evaluate_slots(policies, logs, since, until, bootstrap, seed, as_json, settings)
        return
    if logs:
        if since or until:
            raise click.UsageError("--since/--until filter the store; filter a --logs file before passing it")
        with open(logs, encoding="utf-8") as fh:
            events = list(parse_dsjson(fh))
    else:
        events = list(parse_dsjson(store_lines(settings, parse_time(since), parse_time(until))))
    if not events:
        raise click.ClickException("no learned events with rewards in the selection; nothing to evaluate")
    click.echo(f"{len(events)} logged events", err=True)
    try:
        rows = evaluate(events, policies, reps=bootstrap, seed=seed, settings=settings)
    except RuntimeError as exc:  # VW refused a policy's arguments
        raise click.BadParameter(f"VW cannot run it: {exc}", param_hint="--policy") from None
    if as_json:
        click.echo(json.dumps([{"policy": r.policy, "estimates": r.estimates, "intervals": r.intervals}
                               for r in rows], indent=2))
    else:
        click.echo(format_table(rows))


def _evaluate_slots(policies: tuple[str, ...], logs: str | None, since: str | None, until: str | None, bootstrap: int,
                    seed: int, as_json: bool, settings: Settings) -> None:
    """``evaluate --multislot``: each policy's per-slot IPS and SNIPS beside each slot's logged mean reward."""
    from personalize.evaluation.slots import evaluate_slots, format_slots_table, parse_ccb_dsjson

    try:
        if logs:
            if since or until:
                raise click.UsageError("--since/--until filter the store; filter a --logs file before passing it")
            with open(logs, encoding="utf-8") as fh:
                events = list(parse_ccb_dsjson(fh))
        else:
            events = list(parse_ccb_dsjson(store_lines(settings, parse_time(since), parse_time(until), multislot=True)))
    except ValueError as exc:  # a line VW would crash on, or not JSON
        raise click.ClickException(f"{logs or 'the store'}: {exc}") from None
    if not events:
        raise click.ClickException("no learned multi-slot events in the selection; nothing to evaluate")
    click.echo(f"{len(events)} logged multi-slot events", err=True)
    try:
        rows = evaluate_slots(events, policies, reps=bootstrap, seed=seed, settings=settings)
    except (RuntimeError, ValueError) as exc:  # VW refused a policy's arguments
        raise click.BadParameter(f"VW cannot run it: {exc}", param_hint="--policy") from None
    if as_json:
        click.echo(json.dumps([{"policy": r.policy, "slot": r.slot, "events": r.events, "estimates": r.estimates,
                                "intervals": r.intervals} for r in rows], indent=2))
    else:
        click.echo(format_slots_table(rows))


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(evaluate_command)
