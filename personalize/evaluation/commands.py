"""The ``personalize evaluate`` command (registered through the register_commands hook)."""

from __future__ import annotations

import json
import sys
from typing import Any, Iterator

import click

from personalize.cli_options import open_database, parse_time, settings_from, settings_options
from personalize.config import Settings
from personalize.hookspecs import hookimpl

__all__ = ["evaluate_command", "evaluations_group", "policy_group", "register_commands", "store_lines"]


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


# -- offline evaluation jobs and the learning policy, on the store -------------------------------------------
@click.group("evaluations")
def evaluations_group() -> None:
    """Offline evaluations stored with the service (the same jobs as /evaluations in the API)."""


def _iso(ts: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _summary(job: Any) -> str:
    lines = [f"{job.id}  {job.name!r}  {job.job_type}  {job.status}  {_iso(job.start_time)} .. {_iso(job.end_time)}"]
    if job.description:
        lines.append(f"  {job.description}")
    result = job.result or {}
    rows = result.get("policies", [])
    if rows:
        width = max(len(r["name"]) for r in rows)
        lines.append(f"  {result['events']} events; expected reward ({result['estimator']}) [95% interval]:")
        for r in rows:
            low, high = r["summary"]["confidenceInterval"]
            value = r["summary"]["expectedReward"]
            shown = "n/a" if value is None else f"{value:.4f} [{low:.4f}, {high:.4f}]"
            lines.append(f"  {r['name']:<{width}}  {r['policySource']:<22}  {shown}  {r['arguments']}")
    if result.get("optimalPolicy"):
        gain = result["optimization"]["gainOverCurrent"]
        lines.append(f"  optimal: {result['optimalPolicy']!r}; gain over the policy in force {gain['estimate']:+.4f} "
                     f"[{gain['confidenceInterval'][0]:+.4f}, {gain['confidenceInterval'][1]:+.4f}]")
    return "\n".join(lines)


@evaluations_group.command("run")
@click.option("--name", default="cli evaluation", show_default=True, help="The evaluation's name.")
@click.option("--id", "job_id", help="The evaluation's id (default: a new UUID).")
@click.option("--since", help="First event time (UNIX seconds or ISO date); default: the first event.")
@click.option("--until", help="End of the window (exclusive); default: now.")
@click.option("--policy", "policies", multiple=True, help='Learning settings to evaluate, e.g. "--cb_explore_adf --epsilon 0.1 -q ca" (repeatable).')
@click.option("--optimize", is_flag=True, help="Also search learning settings (enablePolicyOptimization).")
@click.option("--submit", is_flag=True, help="Only queue it for the running service's learner process; don't run it here.")
@settings_options
def evaluations_run(name: str, job_id: str | None, since: str | None, until: str | None, policies: tuple[str, ...],
                    optimize: bool, submit: bool, config_file: str | None, database_url: str | None, data_dir: str | None) -> None:
    """Create an offline evaluation and run it here, with a progress bar (or --submit it to the service)."""
    import os
    import time
    import uuid

    from tqdm import tqdm

    from personalize.evaluation.jobs import EVALUATION, JobExists, create_job, get_job, run_job
    from personalize.policy import PolicyError, check_policy
    from sqlalchemy import update
    from personalize.models import Job

    settings = settings_from(config_file, database_url, data_dir)
    checked = []
    for i, arguments in enumerate(policies, 1):
        try:
            checked.append({"name": f"policy {i}", "arguments": check_policy(arguments)})
        except PolicyError as exc:
            raise click.BadParameter(str(exc), param_hint="--policy") from None
    start, end = parse_time(since) or 0.0, parse_time(until) or time.time()
    if not start < end:
        raise click.BadParameter("--until must be after --since", param_hint="--until")
    job_id = job_id or str(uuid.uuid4())
    owner = f"cli:{os.getpid()}"
    database = open_database(settings, create=False)
    try:
        with database.write() as session:
            try:
                create_job(session, EVALUATION, job_id, name, start, end,
                           {"policies": checked, "enablePolicyOptimization": optimize}, time.time())
            except JobExists:
                raise click.ClickException(f"an evaluation with id {job_id!r} exists; pass another --id") from None
            if not submit:  # claim it at once: it runs here, not in the service's worker
                session.flush()
                session.execute(update(Job).where(Job.kind == EVALUATION, Job.id == job_id)
                                .values(status="Running", owner=owner, heartbeat=time.time()))
        if submit:
            click.echo(f"submitted evaluation {job_id}; the service's learner process runs it "
                       f"(personalize evaluations show {job_id})")
            return
        with tqdm(total=100, desc="evaluating", unit="%", file=sys.stderr) as bar:
            def progress(fraction: float) -> None:
                bar.update(round(fraction * 100) - bar.n)

            run_job(settings, database, EVALUATION, job_id, owner, on_progress=progress)
        with database.read() as session:
            click.echo(_summary(get_job(session, EVALUATION, job_id)))
    finally:
        database.dispose()


@evaluations_group.command("list")
@settings_options
def evaluations_list(config_file: str | None, database_url: str | None, data_dir: str | None) -> None:
    """Every stored evaluation: id, name, type, status, time range."""
    from personalize.evaluation.jobs import EVALUATION, list_jobs

    database = open_database(settings_from(config_file, database_url, data_dir), create=False)
    try:
        with database.read() as session:
            for job in list_jobs(session, EVALUATION):
                click.echo(f"{job.id}  {job.name!r}  {job.job_type}  {job.status}  {_iso(job.start_time)} .. {_iso(job.end_time)}")
    finally:
        database.dispose()


@evaluations_group.command("show")
@click.argument("evaluation_id")
@click.option("--json", "as_json", is_flag=True, help="Print the stored result as JSON.")
@settings_options
def evaluations_show(evaluation_id: str, as_json: bool, config_file: str | None, database_url: str | None,
                     data_dir: str | None) -> None:
    """One evaluation's status and, once done, each policy's expected reward."""
    from personalize.evaluation.jobs import EVALUATION, get_job

    database = open_database(settings_from(config_file, database_url, data_dir), create=False)
    try:
        with database.read() as session:
            job = get_job(session, EVALUATION, evaluation_id)
            if job is None:
                raise click.ClickException(f"no evaluation {evaluation_id!r}; see personalize evaluations list")
            if as_json:
                click.echo(json.dumps({"id": job.id, "name": job.name, "status": job.status,
                                       "description": job.description, "result": job.result}, indent=2))
            else:
                click.echo(_summary(job))
    finally:
        database.dispose()


@click.group("policy")
def policy_group() -> None:
    """The learning policy in force (the same as /configurations/policy in the API)."""


@policy_group.command("get")
@settings_options
def policy_get(config_file: str | None, database_url: str | None, data_dir: str | None) -> None:
    """Print the policy in force as JSON."""
    from personalize.policy import current_policy

    settings = settings_from(config_file, database_url, data_dir)
    database = open_database(settings, create=False)
    try:
        with database.read() as session:
            click.echo(json.dumps(current_policy(session, settings).json()))
    finally:
        database.dispose()


@policy_group.command("set")
@click.option("--arguments", required=True, help='VW learning settings, e.g. "--cb_explore_adf --epsilon 0.1 -q ca".')
@click.option("--name", default="cli policy", show_default=True, help="The policy's name.")
@settings_options
def policy_set(arguments: str, name: str, config_file: str | None, database_url: str | None, data_dir: str | None) -> None:
    """Check the learning settings (--arguments) and make them the policy in force; the learner rebuilds the model."""
    from personalize.policy import Policy, PolicyError, check_policy, store_policy

    try:
        checked = check_policy(arguments)
    except PolicyError as exc:
        raise click.BadParameter(str(exc), param_hint="--arguments") from None
    database = open_database(settings_from(config_file, database_url, data_dir))
    try:
        with database.write() as session:
            store_policy(session, Policy(name, checked))
    finally:
        database.dispose()
    click.echo(json.dumps({"name": name, "arguments": checked}))


@policy_group.command("reset")
@settings_options
def policy_reset(config_file: str | None, database_url: str | None, data_dir: str | None) -> None:
    """Back to the configured default policy (setting learning_policy)."""
    from personalize.policy import current_policy, reset_policy

    settings = settings_from(config_file, database_url, data_dir)
    database = open_database(settings)
    try:
        with database.write() as session:
            reset_policy(session)
        with database.read() as session:
            click.echo(json.dumps(current_policy(session, settings).json()))
    finally:
        database.dispose()


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(evaluate_command)
    cli.add_command(evaluations_group)
    cli.add_command(policy_group)
