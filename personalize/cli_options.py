"""Options and helpers shared by every command that opens the store (core and plugin commands alike)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import click
from sqlalchemy import inspect
from sqlalchemy.exc import ArgumentError
from sqlalchemy.engine import make_url

from personalize import catalog
from personalize.config import Settings, SettingsError, load_settings
from personalize.db import Database

__all__ = ["settings_options", "settings_from", "open_database", "parse_time", "server_key"]


def settings_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--config / --database-url / --data-dir."""
    func = click.option("--data-dir", help="Folder for the default SQLite database [env PERSONALIZE_DATA_DIR].")(func)
    func = click.option("--database-url", help="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db [env PERSONALIZE_DATABASE_URL].")(func)
    func = click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML settings file [env PERSONALIZE_CONFIG].")(func)
    return func


def settings_from(config_file: str | None, database_url: str | None, data_dir: str | None, **extra: Any) -> Settings:
    """Settings from the flags above (over the environment and the file); a bad value is a usage error."""
    try:
        return load_settings({"database_url": database_url, "data_dir": data_dir, **extra}, config_file=config_file)
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None


def server_key(settings: Settings) -> str | None:
    """The key a command sends to a live server (``--url``): the first admin key of its settings, else the
    first client key (an admin key also reaches the catalog and shows the learner's host and process)."""
    keys = settings.admin_key_list or settings.api_key_list
    return keys[0] if keys else None


def open_database(settings: Settings, create: bool = True) -> Database:
    """The store named by the settings, migrated to the newest schema.

    ``create=False`` is for commands that only read the store: where there is no store yet (a
    missing SQLite file, a database without our tables), they say so in one line instead of
    creating an empty one and reporting on it, so a wrong --data-dir is noticed.
    """
    try:
        url = make_url(settings.resolved_database_url)
    except ArgumentError:
        raise click.ClickException(f"{settings.resolved_database_url.split('@')[-1]!r} is not a database URL; see "
                                   "--database-url / PERSONALIZE_DATABASE_URL, e.g. postgresql+psycopg://user@host/db") from None
    shown = url.render_as_string(hide_password=True)
    if not create and url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:" \
            and not url.database.startswith("file:") and not Path(url.database).is_file():
        raise click.ClickException(_NO_DATABASE.format(where=url.database))
    try:
        database = Database.for_settings(settings)
    except ArgumentError as exc:  # no such dialect or driver
        raise click.ClickException(f"cannot use the database URL {shown} ({exc}); see --database-url / "
                                   "PERSONALIZE_DATABASE_URL, e.g. postgresql+psycopg://user@host/db") from None
    try:
        if not create and not inspect(database.engine).has_table("alembic_version"):
            raise click.ClickException(_NO_DATABASE.format(where=shown) + " (it has no personalize tables)")
        database.upgrade()
    except BaseException:
        database.dispose()
        raise
    return database


_NO_DATABASE = ("no database at {where}; start the service (personalize serve) or import data first "
                "(personalize import ...), or point --data-dir / --database-url at an existing one")


def parse_time(text: str | None) -> float | None:
    """A --since/--until value: UNIX seconds, or an ISO date/time (UTC unless it says otherwise)."""
    if text is None:
        return None
    try:
        return catalog.parse_time(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not UNIX seconds or an ISO date/time from year 1 to 9999, such as 2026-11-23 or "
            "2026-11-23T10:00:00Z"
        ) from None
