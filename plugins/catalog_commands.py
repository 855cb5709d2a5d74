"""Commands for the catalog and the generators: ``import items|interactions|movielens``, ``train``, ``evaluate-generators``.

Imports validate every row first; bad rows are reported with their line numbers. Good rows
are stored in one transaction (``--all-or-nothing`` stores nothing if any row is bad), and the
command exits with status 1 whenever a row was rejected, so scripts notice.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import click
from sqlalchemy.orm import Session, sessionmaker
from tqdm import tqdm

from personalize.catalog import (
    DimensionCheck, InteractionIn, InvalidRow, ItemIn, RowError, add_interactions, catalog_dimension, load_training_data,
    parse_interaction, parse_item, upsert_items, validate_rows,
)
from personalize.cli_options import open_database, settings_from, settings_options
from personalize.config import Settings
from personalize.hookspecs import hookimpl

BATCH = 1000
ERRORS_SHOWN = 20


def _sessions(settings: Settings, create: bool = True) -> sessionmaker[Session]:
    """Sessions on the store; ``create=False`` for commands that need data already there (no new empty store)."""
    return open_database(settings, create).sessions


def _mapping(pairs: tuple[str, ...]) -> dict[str, str]:
    """``--map FIELD=COLUMN`` options as {column: field}."""
    out = {}
    for pair in pairs:
        field, sep, column = pair.partition("=")
        if not sep or not field or not column:
            raise click.BadParameter(f"{pair!r}: write FIELD=COLUMN, e.g. --map id=movieId", param_hint="--map")
        out[column] = field
    return out


def read_rows(path: Path, fmt: str | None) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(line number, row) for a CSV (header on line 1) or JSON-lines file; an unparseable line yields its error text."""
    kind = fmt or ("jsonl" if path.suffix.lower() in (".jsonl", ".ndjson", ".json") else "csv")
    try:
        yield from _read_rows(path, kind)
    except UnicodeDecodeError as exc:
        raise click.ClickException(f"{path} is not UTF-8 text (byte {exc.start}: {exc.reason}); save it as UTF-8") from None


def _read_rows(path: Path, kind: str) -> Iterator[tuple[int, dict[str, Any] | str]]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        if kind == "csv":
            reader = csv.DictReader(fh)
            for row in reader:
                if None in row:
                    yield reader.line_num, f"has {len(row[None]) + len(reader.fieldnames or [])} fields, the header has {len(reader.fieldnames or [])}"
                else:
                    yield reader.line_num, dict(row)
        else:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as exc:
                    yield number, f"is not valid JSON ({exc.msg})"
                    continue
                yield number, value if isinstance(value, dict) else "is not a JSON object"


def _typed(row: dict[str, Any], lists: tuple[str, ...], separator: str, numbers: tuple[str, ...]) -> dict[str, Any]:
    for column in lists:
        if isinstance(row.get(column), str):
            row[column] = [part.strip() for part in row[column].split(separator) if part.strip()]
    for column in numbers:
        value = row.get(column)
        if isinstance(value, str) and value.strip():
            try:
                number = float(value)
            except ValueError:
                raise InvalidRow(column, f"{column} must be a number (--number), not {value!r}") from None
            row[column] = int(number) if number.is_integer() else number
    return row


def _vector_text(row: dict[str, Any], separator: str) -> dict[str, Any]:
    """A CSV ``embedding`` column holds the vector as numbers split by --separator, commas or spaces."""
    text = row.get("embedding")
    if isinstance(text, str):
        parts = [p for p in re.split(rf"[\s,{re.escape(separator)}]+", text.strip()) if p]
        try:
            row["embedding"] = [float(p) for p in parts] if parts else None
        except ValueError:
            raise InvalidRow("embedding", f"embedding must be numbers separated by {separator!r}, commas or spaces, "
                                          f"not {text[:40]!r}") from None
    return row


def _parse_file(path: Path, fmt: str | None, mapping: dict[str, str],
                parse: Callable[[dict[str, Any]], Any]) -> tuple[list[Any], list[RowError]]:
    good: list[Any] = []
    errors: list[RowError] = []
    with tqdm(desc=f"reading {path.name}", unit=" rows", file=sys.stderr, disable=None) as bar:
        for line, row in read_rows(path, fmt):
            bar.update()
            if isinstance(row, str):
                errors.append(RowError(line, "line", row))
                continue
            renamed = {mapping.get(key, key): value for key, value in row.items()}
            parsed, failed = validate_rows([(line, renamed)], parse)
            good += parsed
            errors += failed
    return good, errors


def _report(kind: str, loaded: int, errors: list[RowError], all_or_nothing: bool) -> None:
    for error in errors[:ERRORS_SHOWN]:
        click.echo(f"rejected {error}", err=True)
    if len(errors) > ERRORS_SHOWN:
        click.echo(f"... and {len(errors) - ERRORS_SHOWN} more rejected rows", err=True)
    click.echo(f"{kind}: loaded {loaded}, rejected {len(errors)}")
    if errors:
        if all_or_nothing:
            click.echo("nothing was stored (--all-or-nothing); fix the rows above and run again", err=True)
        sys.exit(1)


def _store(sessions: sessionmaker[Session], rows: list[Any], write: Callable[[Session, list[Any]], Any]) -> None:
    """All rows in one transaction, written in batches under a progress bar."""
    with sessions() as session, tqdm(total=len(rows), desc="storing", unit=" rows", file=sys.stderr, disable=None) as bar:
        for start in range(0, len(rows), BATCH):
            write(session, rows[start:start + BATCH])
            bar.update(len(rows[start:start + BATCH]))
        session.commit()


@click.group("import")
def import_group() -> None:
    """Load catalog items or interactions from CSV or JSON-lines files."""


_FORMAT = click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), help="File format [default: from the extension].")
_MAP = click.option("--map", "maps", multiple=True, metavar="FIELD=COLUMN", help="Read FIELD from COLUMN (repeatable).")
_ALL_OR_NOTHING = click.option("--all-or-nothing", is_flag=True, help="Store nothing if any row is rejected.")


@import_group.command("items")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_FORMAT
@_MAP
@click.option("--list", "lists", multiple=True, metavar="COLUMN", help="COLUMN holds a list, split on --separator (repeatable).")
@click.option("--separator", default="|", show_default=True, help="Separator of list columns.")
@click.option("--number", "numbers", multiple=True, metavar="COLUMN", help="COLUMN holds a number (repeatable).")
@_ALL_OR_NOTHING
@settings_options
def import_items(file: Path, fmt: str | None, maps: tuple[str, ...], lists: tuple[str, ...], separator: str,
                 numbers: tuple[str, ...], all_or_nothing: bool, config_file: str | None, database_url: str | None,
                 data_dir: str | None) -> None:
    """Create or update catalog items. Fields: id, createdAt, active, embedding; every other column is a feature.

    An item's embedding (its vector from any model) is a JSON list in JSON lines, or numbers split by
    --separator, commas or spaces in a CSV column; every vector of the catalog has one dimension.

    \b
    Example (MovieLens movies.csv):
      personalize import items movies.csv --map id=movieId --list genres
    """
    settings = settings_from(config_file, database_url, data_dir)
    sessions = _sessions(settings)
    with sessions() as session:
        check = DimensionCheck(catalog_dimension(session))
    items, errors = _parse_file(file, fmt, _mapping(maps),
                                lambda row: check(parse_item(_vector_text(_typed(row, lists, separator, numbers), separator))))
    if not (errors and all_or_nothing):
        _store(sessions, items, upsert_items)
    _report("items", 0 if errors and all_or_nothing else len(items), errors, all_or_nothing)


@import_group.command("interactions")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_FORMAT
@_MAP
@click.option("--type", "default_type", default="view", show_default=True, help="Type of rows without a type column.")
@_ALL_OR_NOTHING
@settings_options
def import_interactions(file: Path, fmt: str | None, maps: tuple[str, ...], default_type: str, all_or_nothing: bool,
                        config_file: str | None, database_url: str | None, data_dir: str | None) -> None:
    """Add interactions. Fields: userId, itemId, type, value (default 1), timestamp (default now), eventId.

    \b
    Example (MovieLens ratings.csv):
      personalize import interactions ratings.csv --map itemId=movieId --map value=rating --type rating
    """
    settings = settings_from(config_file, database_url, data_dir)
    rows, errors = _parse_file(file, fmt, _mapping(maps), lambda row: parse_interaction(row, default_type))
    if not (errors and all_or_nothing):
        _store(_sessions(settings), rows, add_interactions)
    _report("interactions", 0 if errors and all_or_nothing else len(rows), errors, all_or_nothing)


@import_group.command("movielens")
@settings_options
def import_movielens(config_file: str | None, database_url: str | None, data_dir: str | None) -> None:
    """Load the bundled MovieLens-small data set: 9,742 movies as items, 100,836 ratings as interactions."""
    from personalize.movielens import load_movies, load_ratings

    sessions = _sessions(settings_from(config_file, database_url, data_dir))
    items = [ItemIn(m["id"], m["features"], m["created_at"], True) for m in load_movies()]
    ratings = [InteractionIn(user, item, "rating", rating, ts) for user, item, rating, ts in load_ratings()]
    _store(sessions, items, upsert_items)
    _store(sessions, ratings, add_interactions)
    click.echo(f"movielens: loaded {len(items)} items and {len(ratings)} ratings")


@click.command("train")
@click.option("--generator", "names", multiple=True, help="Fit only this generator (repeatable) [default: all].")
@settings_options
def train(names: tuple[str, ...], config_file: str | None, database_url: str | None, data_dir: str | None) -> None:
    """Fit candidate generators on the stored catalog and interactions, and store what they learned.

    Running services pick the new models up at their next refresh (generator_refresh_interval).
    """
    from personalize.candidates import fit_generators, save_generators
    from personalize.plugins import UnknownGeneratorError

    settings = settings_from(config_file, database_url, data_dir)
    sessions = _sessions(settings, create=False)
    with sessions() as session:
        data = load_training_data(session)
    click.echo(f"training on {len(data.item_ids)} items, {len(data.user_ids)} users, {len(data.values)} interactions")
    try:
        fitted = fit_generators(data, list(names) or None, settings)
    except UnknownGeneratorError as exc:
        raise click.BadParameter(str(exc), param_hint="--generator") from None
    with sessions() as session:
        save_generators(session, {name: generator for name, (generator, _) in fitted.items()})
        session.commit()
    for name, (_, seconds) in fitted.items():
        click.echo(f"  {name:<14} fitted in {seconds:6.2f} s")


@click.command("evaluate-generators")
@click.option("--generator", "names", multiple=True, help="Evaluate only this generator (repeatable) [default: all].")
@click.option("-k", "k", default=10, show_default=True, type=click.IntRange(1), help="Items proposed per user.")
@click.option("--holdout", default=0.2, show_default=True, type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Share of each user's latest interactions held out.")
@click.option("--movielens", is_flag=True, help="Evaluate on the bundled MovieLens-small data instead of the store.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write the results as JSON.")
@settings_options
def evaluate_generators_command(names: tuple[str, ...], k: int, holdout: float, movielens: bool, json_path: Path | None,
                                config_file: str | None, database_url: str | None, data_dir: str | None) -> None:
    """Precision@k, recall@k, NDCG@k, coverage, novelty (and RMSE of rating predictors) of each generator on a per-user temporal split."""
    from personalize.catalog import TrainingData
    from personalize.generator_evaluation import as_json, evaluate_generators, format_table
    from personalize.plugins import generator_classes

    if movielens:
        from personalize.movielens import load_movies, load_ratings

        data = TrainingData.build(((m["id"], m["features"], m["created_at"], True) for m in load_movies()), load_ratings())
    else:
        with _sessions(settings_from(config_file, database_url, data_dir), create=False)() as session:
            data = load_training_data(session)
    known = list(generator_classes())
    unknown = [n for n in names if n not in known]
    if unknown:
        raise click.BadParameter(f"unknown generator {unknown[0]!r}; known: {', '.join(known)}", param_hint="--generator")
    try:
        results = evaluate_generators(data, list(names) or known, k, holdout,
                                      progress=lambda name: click.echo(f"evaluating {name} ...", err=True))
    except ValueError as exc:  # a plugin's rating predictor answered NaN or the wrong number of ratings
        raise click.ClickException(str(exc)) from None
    click.echo(format_table(results))
    if json_path:
        json_path.write_text(json.dumps(as_json(results), indent=2) + "\n")


@hookimpl
def register_commands(cli: Any) -> None:
    cli.add_command(import_group)
    cli.add_command(train)
    cli.add_command(evaluate_generators_command)
