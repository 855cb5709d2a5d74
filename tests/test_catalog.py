"""Catalog and interactions: validation, storage on both backends, the HTTP API, and `personalize import`."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from personalize.api import catalog as catalog_api
from personalize.api.errors import register_error_handlers
from personalize.catalog import (
    InvalidRow, ItemIn, add_interactions, deactivate_item, get_item, load_training_data, parse_interaction,
    parse_item, upsert_items,
)
from personalize.cli import cli
from personalize.db import make_engine, make_sessionmaker, upgrade_schema
from personalize.models import Interaction, Item


@pytest.fixture
def sessions(database_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(database_url)
    upgrade_schema(engine)
    yield make_sessionmaker(engine)
    engine.dispose()


def test_parse_item_collects_features_and_names_bad_fields() -> None:
    item = parse_item({"id": 7, "title": "Up", "features": {"genres": ["Animation"]}, "createdAt": "2020-01-01T00:00:00Z"})
    assert item == ItemIn("7", {"genres": ["Animation"], "title": "Up"}, 1577836800.0, None)
    for row, field in [({}, "id"), ({"id": "a", "features": {"_x": 1}}, "features._x"),
                       ({"id": "a", "features": {"x": {"nested": 1}}}, "features.x"),
                       ({"id": "a", "createdAt": "yesterday"}, "createdAt"), ({"id": "a", "active": "maybe"}, "active")]:
        with pytest.raises(InvalidRow) as info:
            parse_item(row)
        assert info.value.field == field


def test_parse_interaction_defaults_and_errors() -> None:
    row = parse_interaction({"userId": "u", "itemId": "i"}, default_type="click", now=5.0)
    assert (row.type, row.value, row.timestamp) == ("click", 1.0, 5.0)
    for bad, field in [({"itemId": "i"}, "userId"), ({"userId": "u", "itemId": "i", "value": "x"}, "value"),
                       ({"userId": "u", "itemId": "i", "rating": 3}, "rating")]:
        with pytest.raises(InvalidRow) as info:
            parse_interaction(bad)
        assert info.value.field == field


def test_upsert_get_deactivate_and_training_data(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        assert upsert_items(session, [ItemIn("a", {"t": "x"}, 10.0), ItemIn("b", {})], now=100.0) == (2, 0)
        session.commit()
    with sessions() as session:
        assert upsert_items(session, [ItemIn("a", {"t": "y"}), ItemIn("c", {}, active=False)], now=200.0) == (1, 1)
        assert deactivate_item(session, "b", now=300.0) and not deactivate_item(session, "zzz")
        add_interactions(session, [parse_interaction({"userId": "u", "itemId": "a", "timestamp": 1}),
                                   parse_interaction({"userId": "u", "itemId": "gone", "timestamp": 2})])
        session.commit()
    with sessions() as session:
        a = get_item(session, "a")
        assert a is not None and (a.features, a.created_at, a.updated_at, a.active) == ({"t": "y"}, 10.0, 200.0, True)
        data = load_training_data(session)
    assert data.item_ids == ("a", "b", "c")
    assert data.item_active.tolist() == [True, False, False]
    assert data.user_ids == ("u",) and data.items.tolist() == [0]  # the interaction on an unknown item is dropped


@pytest.fixture
def client(sessions: sessionmaker[Session]) -> Any:
    app = Flask(__name__)
    register_error_handlers(app)
    app.register_blueprint(catalog_api.bp)
    app.extensions["personalize"] = SimpleNamespace(sessions=sessions)
    return app.test_client()


def test_item_api(client: Any) -> None:
    url = "/personalizer/v1.0/catalog/items"
    created = client.put(f"{url}/m1", json={"features": {"title": "Heat", "genres": ["Crime"]}})
    assert created.status_code == 201 and created.json["features"]["genres"] == ["Crime"] and created.json["active"]
    assert client.put(f"{url}/m1", json={"features": {"title": "Heat (1995)"}}).status_code == 200
    assert client.get(f"{url}/m1").json["features"] == {"title": "Heat (1995)"}
    assert client.delete(f"{url}/m1").status_code == 204
    assert client.get(f"{url}/m1").json["active"] is False
    missing = client.get(f"{url}/nope")
    assert missing.status_code == 404 and missing.json["error"]["code"] == "ItemNotFound"
    assert client.put(f"{url}/m1", json={"id": "m2"}).json["error"]["target"] == "id"


def test_bulk_calls_are_all_or_nothing(client: Any, sessions: sessionmaker[Session]) -> None:
    url = "/personalizer/v1.0/catalog/items"
    bad = client.post(url, json={"items": [{"id": "ok"}, {"features": {}}, {"id": "x", "features": {"_y": 1}}]})
    assert bad.status_code == 400 and bad.json["error"]["target"] == "items[1]"
    assert "items[2].features._y" in bad.json["error"]["message"]
    good = client.post(url, json={"items": [{"id": "ok"}, {"id": "ok2", "active": False}]})
    assert good.json == {"inserted": 2, "updated": 0}
    inter = "/personalizer/v1.0/interactions"
    assert client.post(inter, json={"interactions": [{"userId": "u", "itemId": "ok"}, {"userId": "u"}]}).status_code == 400
    assert client.post(inter, json={"interactions": "x"}).json["error"]["target"] == "interactions"
    posted = client.post(inter, json={"interactions": [{"userId": "u", "itemId": "ok", "type": "purchase", "value": 9.5}]})
    assert posted.status_code == 201 and posted.json == {"inserted": 1}
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Item)) == 2
        assert session.scalar(select(func.count()).select_from(Interaction)) == 1


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_import_items_and_interactions(tmp_path: Path, database_url: str, sessions: sessionmaker[Session]) -> None:
    runner = CliRunner()
    items = _write(tmp_path / "movies.csv", "movieId,title,genres,year\n1,Toy Story,Animation|Comedy,1995\n2,Heat,Crime,1995\n")
    result = runner.invoke(cli, ["import", "items", str(items), "--map", "id=movieId", "--list", "genres", "--number", "year",
                                 "--database-url", database_url])
    assert result.exit_code == 0, result.output
    assert "items: loaded 2, rejected 0" in result.output
    lines = [{"userId": "u1", "itemId": "1", "type": "rating", "value": 4.5, "timestamp": 1000},
             {"userId": "u1", "itemId": "2", "timestamp": "2020-01-01T00:00:00Z"}]
    interactions = _write(tmp_path / "events.jsonl", "\n".join(json.dumps(line) for line in lines) + "\n")
    result = runner.invoke(cli, ["import", "interactions", str(interactions), "--database-url", database_url])
    assert result.exit_code == 0 and "interactions: loaded 2, rejected 0" in result.output
    with sessions() as session:
        toy = get_item(session, "1")
        assert toy is not None and toy.features == {"title": "Toy Story", "genres": ["Animation", "Comedy"], "year": 1995}
        types = session.scalars(select(Interaction.type).order_by(Interaction.timestamp)).all()
    assert types == ["rating", "view"]


def test_import_reports_bad_rows_with_line_numbers(tmp_path: Path, database_url: str, sessions: sessionmaker[Session]) -> None:
    runner = CliRunner()
    bad = _write(tmp_path / "bad.csv", "id,title,year\na,A,2001\n,NoId,2002\nc,C,soon\nd,D,2003,extra\ne,E,2004\n")
    args = ["import", "items", str(bad), "--number", "year", "--database-url", database_url]
    strict = runner.invoke(cli, [*args, "--all-or-nothing"])
    assert strict.exit_code == 1
    assert "items: loaded 0, rejected 3" in strict.output and "nothing was stored" in strict.output
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Item)) == 0
    result = runner.invoke(cli, args)
    assert result.exit_code == 1
    assert "line 3: id:" in result.output and "line 4: year:" in result.output and "line 5: line:" in result.output
    assert "items: loaded 2, rejected 3" in result.output
    jsonl = _write(tmp_path / "bad.jsonl", '{"userId": "u", "itemId": "a"}\n{not json\n[1]\n')
    result = runner.invoke(cli, ["import", "interactions", str(jsonl), "--database-url", database_url])
    assert "line 2: line: is not valid JSON" in result.output and "line 3: line: is not a JSON object" in result.output
    assert "interactions: loaded 1, rejected 2" in result.output
    with sessions() as session:
        assert sorted(session.scalars(select(Item.id))) == ["a", "e"]
