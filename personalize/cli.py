"""The ``personalize`` command line. Plugins add their commands through the register_commands hook."""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import signal
import socket
import subprocess
import sys
from typing import Any

import click

from personalize import plugins, store
from personalize.cli_options import open_database, parse_time, server_key, settings_from, settings_options
from personalize.config import Settings, settings_table
from personalize.db_health import describe, is_unavailable

__all__ = ["main", "cli"]


class _Cli(click.Group):
    """The command group; an unreachable database is a one-line error in every command, plugins' too."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            raise click.ClickException(f"cannot reach the database ({describe(exc)}); check --database-url / "
                                       "PERSONALIZE_DATABASE_URL and that the database is up") from None


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="personalize", prog_name="personalize")
@click.option("--log-level", default="WARNING", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], case_sensitive=False),
              help="Logging level (INFO shows migrations and learner activity).")
def cli(log_level: str) -> None:
    """personalize: a self-hosted, Personalizer-compatible contextual bandit service."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@cli.command(epilog="\b\nSettings (environment variables, or keys of the --config TOML file):\n" + settings_table())
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535), help="Port to listen on.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="Server processes. With more than one, the learner runs as its own process.")
@click.option("--threads", default=4, show_default=True, type=click.IntRange(min=1), help="Threads per server process.")
@click.option("--no-auth", is_flag=True,
              help="Serve a non-loopback --host without API keys: anyone who reaches the port may call everything.")
@settings_options
def serve(host: str, port: int, workers: int, threads: int, no_auth: bool,
          config_file: str | None, database_url: str | None, data_dir: str | None) -> None:
    """Run the service under gunicorn (production WSGI server)."""
    settings = settings_from(config_file, database_url, data_dir)
    from personalize.ops import logs, metrics
    from personalize.server import run_server

    _check_auth(host, port, settings, no_auth)
    logs.configure(settings)

    _check_port_free(host, port)
    open_database(settings).dispose()  # migrate once, before the workers fork
    _metrics_dir(settings, clean=True)  # before any process counts: the workers and the learner inherit it
    # Workers rebuild settings from the environment: pass the flags on through it.
    for key, value in (("PERSONALIZE_CONFIG", config_file), ("PERSONALIZE_DATABASE_URL", database_url), ("PERSONALIZE_DATA_DIR", data_dir)):
        if value:
            os.environ[key] = value
    learner: subprocess.Popen[bytes] | None = None
    if workers > 1 and settings.learner == "thread":
        os.environ["PERSONALIZE_LEARNER"] = "off"
        learner = subprocess.Popen([sys.executable, "-m", "personalize", "learn"])
    click.echo(f"personalize: serving on http://{host}:{port} ({workers} worker(s), database {settings.resolved_database_url})")
    try:
        run_server(host, port, workers, threads, log_format=settings.log_format)
    finally:
        if learner is not None:
            learner.send_signal(signal.SIGTERM)
            learner.wait(15)
            metrics.process_exited(learner.pid)


def _metrics_dir(settings: Settings, clean: bool) -> None:
    from personalize.ops import metrics

    try:
        metrics.prepare_dir(settings, clean)
    except OSError as exc:
        raise click.ClickException(f"cannot use the metrics folder {metrics.metrics_dir(settings)} ({exc.strerror}); "
                                   "set PERSONALIZE_METRICS_DIR to a folder this user may write") from None


def _check_auth(host: str, port: int, settings: Settings, no_auth: bool) -> None:
    """Refuse to serve a network without keys unless told to (--no-auth); loopback stays open, as always."""
    if settings.auth_enabled:
        if no_auth:
            raise click.UsageError("--no-auth contradicts the configured PERSONALIZE_API_KEYS/PERSONALIZE_ADMIN_KEYS; drop one")
        if not settings.admin_key_list:
            click.echo("personalize: no PERSONALIZE_ADMIN_KEYS: catalog, interactions, generators/train and every other "
                       "admin endpoint answer 403 to all keys (the CLI still reaches the store)", err=True)
        return
    if no_auth:
        click.echo(f"personalize: WARNING: --no-auth: anyone who can reach {host}:{port} may rank, reward, rewrite the "
                   "catalog and start training", err=True)
    elif not _is_loopback(host):
        raise click.ClickException(
            f"refusing to serve {host} without API keys: set PERSONALIZE_API_KEYS and PERSONALIZE_ADMIN_KEYS "
            "(comma-separated; see docs/security.md), or pass --no-auth to serve it open"
        )


def _is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is a loopback one; an unresolvable name is not."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except (OSError, UnicodeError):
        return False
    return bool(infos) and all(ipaddress.ip_address(str(info[4][0]).partition("%")[0]).is_loopback for info in infos)


def _check_port_free(host: str, port: int) -> None:
    """Fail at once, naming the fix, when the address is taken (gunicorn would retry for seconds)."""
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {host}:{port} ({exc.strerror}): another server (perhaps another "
            "'personalize serve') holds it; stop that one or pass --port"
        ) from None


@cli.command()
@settings_options
def learn(config_file: str | None, database_url: str | None, data_dir: str | None) -> None:
    """Run the learner as its own process (for several server processes or machines)."""
    from personalize.learner import Learner
    from personalize.ops import logs

    settings = settings_from(config_file, database_url, data_dir)
    logs.configure(settings)
    _metrics_dir(settings, clean=False)  # the server on this host adds the learner's counters to /metrics
    from personalize.evaluation.auto import from_service_config
    from personalize.evaluation.jobs import JobRunner

    database = open_database(settings)
    learner = Learner(settings, database)
    # auto-optimization follows the learner's live service configuration (polled by the learner, no query here)
    jobs = JobRunner(settings, database, learner.holds_lease, auto_settings=lambda: from_service_config(learner.live.current))

    def _stop(*_: Any) -> None:
        jobs.stop(0)
        learner.stop(0)

    signal.signal(signal.SIGTERM, _stop)
    click.echo(f"personalize: learner {learner.owner} on {settings.resolved_database_url}")
    learner.start()
    jobs.start()
    try:
        while not learner.wait(0.5):
            pass
    except KeyboardInterrupt:
        jobs.stop()
        learner.stop()


@cli.command()
@click.option("--url", help="Ask a running server (e.g. http://127.0.0.1:8080) instead of reading the database.")
@settings_options
def status(url: str | None, config_file: str | None, database_url: str | None, data_dir: str | None) -> None:
    """Model version, last learning time, event counts and learning settings, as JSON."""
    if url:
        import requests

        key = server_key(settings_from(config_file, database_url, data_dir))
        headers = {"Ocp-Apim-Subscription-Key": key} if key else {}
        try:
            response = requests.get(url.rstrip("/") + "/personalizer/v1.0/status", headers=headers, timeout=10)
        except requests.RequestException as exc:
            raise click.ClickException(f"cannot reach {url}: {exc}") from None
        try:
            body = response.json()
        except ValueError:
            raise click.ClickException(f"{url} answered {response.status_code} without JSON; is it a personalize server?") from None
        if response.status_code != 200:
            message = body.get("error", {}).get("message") if isinstance(body, dict) else None
            raise click.ClickException(f"{url} answered {response.status_code}: {message or body}")
        click.echo(json.dumps(body, indent=2))
        return
    import time

    from personalize import service_config
    from personalize.service import status_report

    settings = settings_from(config_file, database_url, data_dir)
    with open_database(settings, create=False).read() as session:
        report = status_report(session, settings, service_config.load(session, settings), time.time())
    # servingVersion belongs to a running server's ranker: ask it with --url
    click.echo(json.dumps(report, indent=2))


@cli.group()
def logs() -> None:
    """Work with the event log."""


@logs.command("export")
@click.option("--format", "fmt", type=click.Choice(["dsjson"]), default="dsjson", show_default=True, help="Output format.")
@click.option("--output", "-o", type=click.File("w"), default="-", help="File to write (default: standard output).")
@click.option("--since", help="Only events ranked at or after this time (UNIX seconds or ISO date/time).")
@click.option("--until", help="Only events ranked before this time (UNIX seconds or ISO date/time).")
@click.option("--all", "include_unlearned", is_flag=True, help="Also events not learned yet (cost from the rewards so far).")
@click.option("--multislot", is_flag=True, help="The multi-slot events instead, as VW's CCB DSJSON (--ccb_explore_adf).")
@settings_options
def export_logs(fmt: str, output: Any, since: str | None, until: str | None, include_unlearned: bool, multislot: bool,
                config_file: str | None, database_url: str | None, data_dir: str | None) -> None:
    """Write logged events in VW's DSJSON format, one decision per line, in the order the model learned them
    (single-slot events by default; --multislot for the multi-slot ones)."""
    from personalize.dsjson import event_line, multislot_line

    from personalize import service_config

    settings = settings_from(config_file, database_url, data_dir)
    count = 0
    with open_database(settings, create=False).read() as session:
        default_reward = service_config.load(session, settings).default_reward
        for event in store.iter_events(session, parse_time(since), parse_time(until), learned_only=not include_unlearned,
                                       multislot=multislot):
            if multislot:
                answered = len(store.active_slots(event.slots))
                rewards = event.learned_slot_rewards or [default_reward] * answered
                output.write(multislot_line(event, rewards) + "\n")
            else:
                reward = event.learned_reward if event.learned_reward is not None else default_reward
                output.write(event_line(event, reward) + "\n")
            count += 1
    click.echo(f"exported {count} events", err=True)


@cli.group()
def users() -> None:
    """A user's stored data: export it, erase it (also GET/DELETE /personalizer/v1.0/users/{userId})."""


def _user_id(user_id: str) -> str:
    from personalize.userdata import user_id_problem

    problem = user_id_problem(user_id)
    if problem is not None:
        raise click.ClickException(f"user id {user_id!r} {problem}")
    return user_id


@users.command("export")
@click.argument("user_id")
@click.option("--output", "-o", type=click.File("w"), default="-", help="File to write (default: standard output).")
@settings_options
def users_export(user_id: str, output: Any, config_file: str | None, database_url: str | None, data_dir: str | None) -> None:
    """Write everything stored about USER_ID (events with rewards, interactions) as JSON."""
    from personalize.userdata import export_user

    user_id = _user_id(user_id)
    settings = settings_from(config_file, database_url, data_dir)
    database = open_database(settings, create=False)
    try:
        with database.reading() as connection:
            data = export_user(connection, user_id)
    finally:
        database.dispose()
    if data is None:
        raise click.ClickException(f"no events or interactions are stored for user {user_id!r}")
    output.write(json.dumps(data, indent=2) + "\n")


@users.command("delete")
@click.argument("user_id")
@settings_options
def users_delete(user_id: str, config_file: str | None, database_url: str | None, data_dir: str | None) -> None:
    """Erase everything stored about USER_ID in one transaction; prints the rows deleted per kind."""
    from personalize.userdata import delete_user

    user_id = _user_id(user_id)
    settings = settings_from(config_file, database_url, data_dir)
    database = open_database(settings, create=False)
    try:
        with database.transaction() as connection:
            deleted = delete_user(connection, user_id)
    finally:
        database.dispose()
    if deleted is None:
        raise click.ClickException(f"no events or interactions are stored for user {user_id!r}")
    click.echo(json.dumps({"userId": user_id, "deleted": deleted}, indent=2))


@cli.group()
def db() -> None:
    """Database schema management."""


@db.command("upgrade")
@settings_options
def db_upgrade(config_file: str | None, database_url: str | None, data_dir: str | None) -> None:
    """Apply Alembic migrations up to the newest schema."""
    settings = settings_from(config_file, database_url, data_dir)
    open_database(settings).dispose()
    click.echo(f"schema up to date: {settings.resolved_database_url}")


@cli.group()
def config() -> None:
    """The service configuration (Personalizer's /configurations/service), read and changed in the database:
    running servers and learners apply a change within config_poll_interval."""


@config.command("get")
@settings_options
def config_get(config_file: str | None, database_url: str | None, data_dir: str | None) -> None:
    """Print the configuration in force, as the API shows it (JSON)."""
    from personalize import service_config

    settings = settings_from(config_file, database_url, data_dir)
    with open_database(settings, create=False).read() as session:
        click.echo(json.dumps(service_config.load(session, settings).to_api(), indent=2))


@config.command("set")
@click.argument("assignments", nargs=-1, required=True, metavar="FIELD=VALUE...")
@settings_options
def config_set(assignments: tuple[str, ...], config_file: str | None, database_url: str | None,
               data_dir: str | None) -> None:
    """Change fields, e.g. `personalize config set learningMode=Apprentice rewardWaitTime=PT10M`.

    Fields are the API's (rewardWaitTime, defaultReward, rewardAggregation, explorationPercentage,
    modelExportFrequency, logRetentionDays, modelRetrainDays, learningMode, isAutoOptimizationEnabled,
    autoOptimizationFrequency, autoOptimizationStartDate); values are JSON (numbers, true/false) or text."""
    import time

    from personalize import service_config
    from personalize.api.errors import ApiError
    from personalize.api.schemas import RequestSchemas

    changes: dict[str, Any] = {}
    for assignment in assignments:
        name, sep, raw = assignment.partition("=")
        if not sep or not name:
            raise click.ClickException(f"{assignment!r} is not FIELD=VALUE (e.g. learningMode=Apprentice)")
        try:
            changes[name.strip()] = json.loads(raw)
        except ValueError:
            changes[name.strip()] = raw
    settings = settings_from(config_file, database_url, data_dir)
    database = open_database(settings)
    try:
        with database.write() as session:
            current = service_config.load(session, settings)
            body = {**current.to_api(), **changes}
            RequestSchemas(settings).check("ServiceConfiguration", body)
            now = time.time()
            stored = service_config.save(session, service_config.parse_update(body, current, settings, now), now)
    except ApiError as exc:
        raise click.ClickException(exc.message) from None
    finally:
        database.dispose()
    click.echo(json.dumps(stored.to_api(), indent=2))


@cli.group()
def model() -> None:
    """Export, import or reset the model (Personalizer's /model), in the database: running servers and the
    learner switch to an imported or reset model within config_poll_interval."""


@model.command("export")
@click.option("--output", "-o", type=click.File("wb"), default="-", help="File to write (default: standard output).")
@click.option("--signed", is_flag=True, help="A zip archive signed with PERSONALIZE_MODEL_SIGNING_KEY.")
@settings_options
def model_export(output: Any, signed: bool, config_file: str | None, database_url: str | None, data_dir: str | None) -> None:
    """Write the newest model: raw VW bytes, or (--signed) a signed archive."""
    import time

    from personalize import model_admin
    from personalize.api.errors import ApiError

    settings = settings_from(config_file, database_url, data_dir)
    try:
        with open_database(settings, create=False).read() as session:
            data = model_admin.export_model(session, settings, signed, time.time())
    except ApiError as exc:
        raise click.ClickException(exc.message) from None
    output.write(data)
    click.echo(f"exported {len(data)} bytes", err=True)


@model.command("import")
@click.argument("path", type=click.File("rb"))
@settings_options
def model_import(path: Any, config_file: str | None, database_url: str | None, data_dir: str | None) -> None:
    """Make the model in PATH (from `model export` or GET /model) the served one; the learner continues from it."""
    import time

    from personalize import model_admin
    from personalize.api.errors import ApiError

    settings = settings_from(config_file, database_url, data_dir)
    database = open_database(settings)
    try:
        installed = model_admin.import_model(database, settings, path.read(), time.time())
    except ApiError as exc:
        raise click.ClickException(exc.message) from None
    finally:
        database.dispose()
    click.echo(f"imported as model version {installed.version}")


@model.command("reset")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@settings_options
def model_reset(yes: bool, config_file: str | None, database_url: str | None, data_dir: str | None) -> None:
    """Start over from an untrained model (the logs stay; export the model first to keep it)."""
    import time

    from personalize import model_admin

    if not yes:
        click.confirm("Replace the model with an untrained one?", abort=True)
    settings = settings_from(config_file, database_url, data_dir)
    database = open_database(settings, create=False)
    try:
        installed = model_admin.reset_model(database, settings, time.time())
    finally:
        database.dispose()
    click.echo(f"reset: model version {installed.version} is untrained")


plugins.register_commands(cli)


def main() -> None:
    cli()
