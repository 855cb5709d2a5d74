"""Catalog and interactions: validation, storage on both backends, the HTTP API, and `personalize import`."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import click
from hypothesis import given
from hypothesis import strategies as st
import numpy as np
import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from personalize import catalog
from personalize.api import catalog as catalog_api
from personalize.api.errors import ApiError, register_error_handlers
from personalize.catalog import (
    InvalidRow, ItemIn, TrainingData, add_interactions, deactivate_item, get_item, load_training_data, parse_interaction,
    parse_item, upsert_items,
)
from personalize.cli import cli
from personalize.cli_options import parse_time as cli_parse_time
from personalize.features import MAX_MAGNITUDE
from personalize.features import ACTION_INDEX, feature_namespaces
from personalize.api.schemas import RequestSchemas
from personalize.config import load_settings
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
                                   parse_interaction({"userId": "u", "itemId": "gone", "timestamp": 2}),
                                   parse_interaction({"userId": "v", "itemId": "a", "type": "rating", "value": 4, "timestamp": 3})])
        session.commit()
    with sessions() as session:
        a = get_item(session, "a")
        assert a is not None and (a.features, a.created_at, a.updated_at, a.active) == ({"t": "y"}, 10.0, 200.0, True)
        data = load_training_data(session)
    assert data.item_ids == ("a", "b", "c")
    assert data.item_active.tolist() == [True, False, False]
    assert data.user_ids == ("u", "v") and data.items.tolist() == [0, 0]  # the interaction on an unknown item is dropped
    assert data.is_rating.tolist() == [False, True]  # a view is no rating; type "rating" is


@pytest.fixture
def client(sessions: sessionmaker[Session]) -> Any:
    app = Flask(__name__)
    register_error_handlers(app)
    app.register_blueprint(catalog_api.bp)
    app.extensions["personalize"] = SimpleNamespace(sessions=sessions, schemas=RequestSchemas(load_settings({}, env={})))
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


# Regression tests for input the catalog once stored wrongly or answered with a 500 (adversarial probe).

ITEMS = "/personalizer/v1.0/catalog/items"
INTERACTIONS = "/personalizer/v1.0/interactions"


def _count(sessions: sessionmaker[Session], model: Any) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_ids_with_surrounding_whitespace_are_rejected_never_trimmed(client: Any, sessions: sessionmaker[Session]) -> None:
    put = client.put(f"{ITEMS}/%20sp%20", json={"features": {"a": 1}})
    assert put.status_code == 400 and put.json["error"]["target"] == "id"
    assert "whitespace" in put.json["error"]["message"]
    assert client.get(f"{ITEMS}/sp").status_code == 404
    bulk = client.post(ITEMS, json={"items": [{"id": "ok"}, {"id": " b"}]})
    assert bulk.status_code == 400 and "items[1].id" in bulk.json["error"]["message"]
    rows = [{"userId": " u1", "itemId": "ok"}, {"userId": "u1", "itemId": "ok "}]
    inter = client.post(INTERACTIONS, json={"interactions": rows})
    assert inter.status_code == 400
    assert "interactions[0].userId" in inter.json["error"]["message"] and "interactions[1].itemId" in inter.json["error"]["message"]
    assert _count(sessions, Item) == 0 and _count(sessions, Interaction) == 0


@pytest.mark.parametrize("bad", [1e308, 1e20, -1e20, "1e400", "inf", "-Infinity", "nan", "1e20", 253402300800,
                                 "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_times_must_be_finite_and_within_years_1_to_9999(client: Any, sessions: sessionmaker[Session], bad: Any) -> None:
    put = client.put(f"{ITEMS}/m19", json={"createdAt": bad})
    assert put.status_code == 400 and put.json["error"]["target"] == "createdAt", put.json
    assert "0001-01-01" in put.json["error"]["message"] and "9999-12-31" in put.json["error"]["message"]
    assert client.get(f"{ITEMS}/m19").status_code == 404
    bulk = client.post(ITEMS, json={"items": [{"id": "m20", "createdAt": bad}]})
    assert bulk.status_code == 400 and "items[0].createdAt" in bulk.json["error"]["message"]
    inter = client.post(INTERACTIONS, json={"interactions": [{"userId": "u1", "itemId": "m19", "timestamp": bad}]})
    assert inter.status_code == 400 and "interactions[0].timestamp" in inter.json["error"]["message"]
    assert _count(sessions, Item) == 0 and _count(sessions, Interaction) == 0


def test_the_extreme_representable_times_are_stored_and_read_back(client: Any) -> None:
    assert client.put(f"{ITEMS}/old", json={"createdAt": catalog.MIN_TIME}).status_code == 201
    assert client.put(f"{ITEMS}/new", json={"createdAt": "9999-12-31T23:59:59Z"}).status_code == 201
    assert client.get(f"{ITEMS}/old").json["createdAt"] == "0001-01-01T00:00:00Z"
    assert client.get(f"{ITEMS}/new").json["createdAt"] == "9999-12-31T23:59:59Z"


def test_parse_time_rejects_non_finite_and_out_of_range_times() -> None:
    assert catalog.parse_time("0001-01-01T00:00:00Z") == catalog.MIN_TIME
    assert catalog.parse_time(str(catalog.MAX_TIME)) == catalog.MAX_TIME
    for text in ["nan", "inf", "-inf", "1e400", "1e20", "-1e20", "253402300800", "0001-01-01T00:00:00+00:01", "yesterday"]:
        with pytest.raises(ValueError):
            catalog.parse_time(text)
    with pytest.raises(click.BadParameter):  # the CLI's --since/--until reuse it
        cli_parse_time("1e400")
    for value in [1e20, float("nan"), 10**400, True]:  # numbers from JSON lines, not only strings
        with pytest.raises(InvalidRow) as info:
            parse_interaction({"userId": "u", "itemId": "i", "timestamp": value})
        assert info.value.field == "timestamp"


@pytest.mark.parametrize("value", [1e39, -1e7, "1e400", 1_000_001, 10**400])
def test_interaction_values_are_bounded(client: Any, sessions: sessionmaker[Session], value: Any) -> None:
    with pytest.raises(InvalidRow) as info:
        parse_interaction({"userId": "u1", "itemId": "i3", "value": value})
    assert info.value.field == "value"
    if value != 10**400:  # the HTTP body parser refuses such integers itself
        bad = client.post(INTERACTIONS, json={"interactions": [{"userId": "u1", "itemId": "i3", "value": value}]})
        assert bad.status_code == 400 and "interactions[0].value" in bad.json["error"]["message"]
        assert "1000000" in bad.json["error"]["message"]
    good = [{"userId": "u1", "itemId": "i3", "value": catalog.MAX_INTERACTION_VALUE},
            {"userId": "u1", "itemId": "i4", "value": -catalog.MAX_INTERACTION_VALUE}]
    assert client.post(INTERACTIONS, json={"interactions": good}).status_code == 201
    assert _count(sessions, Interaction) == 2


def test_als_trains_on_values_at_the_bound() -> None:
    from plugins.als import AlsGenerator  # noqa: PLC0415 - the generator whose float32 maths set the bound

    items = [(f"i{k}", {}, 0.0, True) for k in range(20)]
    rows = [(f"u{u}", f"i{(u * 7 + k) % 20}", 1.0, float(k)) for u in range(10) for k in range(5)]
    rows += [("u1", "i3", catalog.MAX_INTERACTION_VALUE, 9.0)] * 50 + [("u2", "i4", -catalog.MAX_INTERACTION_VALUE, 9.0)]
    generator = AlsGenerator()
    generator.fit(TrainingData.build(items, rows))
    assert generator.user_factors is not None and np.isfinite(generator.user_factors).all()
    assert np.isfinite(generator.item_factors).all()


def test_item_ids_cannot_contain_a_slash(client: Any, sessions: sessionmaker[Session]) -> None:
    bad = client.post(ITEMS, json={"items": [{"id": "s/lash"}]})
    assert bad.status_code == 400 and "items[0].id" in bad.json["error"]["message"] and "URL" in bad.json["error"]["message"]
    assert _count(sessions, Item) == 0


def test_an_id_sent_twice_in_one_bulk_call_is_a_bad_row(client: Any, sessions: sessionmaker[Session]) -> None:
    bad = client.post(ITEMS, json={"items": [{"id": "b1", "features": {"v": 1}}, {"id": "b0"}, {"id": "b1", "features": {"v": 2}}]})
    assert bad.status_code == 400 and bad.json["error"]["code"] == "InvalidRows"
    assert bad.json["error"]["target"] == "items[2]"
    assert "items[2].id" in bad.json["error"]["message"] and "'b1'" in bad.json["error"]["message"]
    assert "items[0]" in bad.json["error"]["message"]
    assert _count(sessions, Item) == 0


SAMPLE_IDS = ["u1", "", "u\x00", "u\n", "tab\there", "\u200b", "x" * 256, "x" * 257, " u", "u ", "héllo wörld", "a/b", 7, None, True, ["u"]]


def test_interaction_ids_follow_ranks_rules(client: Any, sessions: sessionmaker[Session]) -> None:
    nul = client.post(INTERACTIONS, json={"interactions": [{"userId": "u\u0000", "itemId": "i1"}]})
    assert nul.status_code == 400 and "interactions[0].userId" in nul.json["error"]["message"]
    assert "control characters" in nul.json["error"]["message"]
    assert _count(sessions, Interaction) == 0
    rank_schemas = RequestSchemas(load_settings({}, env={}))
    for sample in SAMPLE_IDS:  # every id Rank refuses is refused here too, so no stored history is unusable
        try:
            rank_schemas.check("RankRequest", {"userId": str(sample) if type(sample) is int else sample})  # numbers are stored as text
            rank_accepts = True
        except ApiError:
            rank_accepts = False
        for field in ("userId", "itemId"):
            row = {"userId": "u", "itemId": "i", field: sample}
            try:
                parse_interaction(row)
                accepted = True
            except InvalidRow as exc:
                assert exc.field == field
                accepted = False
            assert rank_accepts or not accepted, (sample, field)
            if sample in ("u1", "héllo wörld", "x" * 256, "a/b", 7):
                assert accepted, sample


def test_unknown_fields_are_named_not_ignored(client: Any, sessions: sessionmaker[Session]) -> None:
    train = client.post("/personalizer/v1.0/generators/train", json={"generatorz": ["als"]})
    assert train.status_code == 400 and train.json["error"] == {
        "code": "UnknownField", "target": "generatorz", "message": train.json["error"]["message"]}
    assert "accepted: generators" in train.json["error"]["message"]
    for url, body in [(ITEMS, {"items": [{"id": "a"}], "item": []}), (INTERACTIONS, {"interactions": [{"userId": "u", "itemId": "a"}], "x": 1})]:
        bad = client.post(url, json=body)
        assert bad.status_code == 400 and bad.json["error"]["code"] == "UnknownField", bad.json
    for row, field in [({"id": "a", "created_at": 5}, "created_at"), ({"id": "a", "Active": False}, "Active"),
                       ({"id": "a", "feature": {"x": 1}}, "feature"), ({"id": "a", "updatedAt": "2020-01-01"}, "updatedAt"),
                       ({"id": "a", "x": 1, "features": {"x": 2}}, "x")]:
        bad = client.post(ITEMS, json={"items": [{"id": "ok"}, row]})
        assert bad.status_code == 400 and f"items[1].{field}" in bad.json["error"]["message"], (row, bad.json)
    assert _count(sessions, Item) == 0 and _count(sessions, Interaction) == 0
    # Documented: other keys of an item row are features (CSV columns, JSON lines, the API alike).
    assert client.post(ITEMS, json={"items": [{"id": "a", "extra": 1, "features": {"t": "x"}}]}).status_code == 200
    assert client.get(f"{ITEMS}/a").json["features"] == {"t": "x", "extra": 1}


def test_features_and_types_that_would_break_later_reads_are_a_400(client: Any, sessions: sessionmaker[Session]) -> None:
    for features, target in [({"price": 1e12}, "features.price"), ({"v": [1, -2e9]}, "features.v")]:
        bad = client.put(f"{ITEMS}/a", json={"features": features})  # VW refuses such numbers when Rank proposes the item
        assert bad.status_code == 400 and bad.json["error"]["target"] == target, bad.json
    with pytest.raises(InvalidRow) as info:  # from JSON lines: Python's json reads any integer
        parse_item({"id": "a", "n": [1, 10**400]})
    assert info.value.field == "features.n"
    bad = client.post(INTERACTIONS, json={"interactions": [{"userId": "u", "itemId": "a", "type": "vi\u0000ew"}]})
    assert bad.status_code == 400 and "interactions[0].type" in bad.json["error"]["message"]  # PostgreSQL text cannot hold NUL
    assert _count(sessions, Item) == 0 and _count(sessions, Interaction) == 0
    edge = {"price": MAX_MAGNITUDE, "v": [-MAX_MAGNITUDE, 0.5], "t": "x", "ok": True}
    assert client.put(f"{ITEMS}/a", json={"features": edge}).status_code == 201
    stored = client.get(f"{ITEMS}/a").json["features"]
    assert feature_namespaces([{"item": stored}], "candidates[a]", ACTION_INDEX)  # what Rank by userId does with it


@given(st.lists(st.tuples(st.sampled_from("ab"), st.sampled_from(["i0", "i1", "i2"]), st.integers(1, 5),
                          st.integers(0, 3), st.sampled_from(["rating", "view", None])), max_size=30))
def test_ratings_keep_the_latest_rating_per_user_and_item(rows: list[tuple[str, str, int, int, str | None]]) -> None:
    """Only rating rows (or rows without a type) count; of a pair rated twice, the later (time, then row order) wins."""
    items = [(f"i{k}", {}, 0.0, True) for k in range(3)]
    data = TrainingData.build(items, [(u, i, float(v), float(t)) if kind is None else (u, i, float(v), float(t), kind)
                                      for u, i, v, t, kind in rows])
    expected: dict[tuple[str, str], tuple[int, int, float]] = {}
    for n, (u, i, v, t, kind) in enumerate(rows):
        if kind in ("rating", None):
            expected[u, i] = max(expected.get((u, i), (-1, -1, 0.0)), (t, n, float(v)))
    users, positions, values = data.ratings()
    got = {(data.user_ids[u], data.item_ids[i]): v for u, i, v in zip(users, positions, values)}
    assert got == {pair: v for pair, (_, _, v) in expected.items()}
    assert data.with_interactions(data.values > 2).is_rating.tolist() == data.is_rating[data.values > 2].tolist()


# Item vectors: the catalog's `embedding` field.

def _vectors(sessions: sessionmaker[Session]) -> dict[str, list[float] | None]:
    with sessions() as session:
        return {row.id: None if row.embedding is None else np.frombuffer(row.embedding, "<f4").tolist()
                for row in session.execute(select(Item.id, Item.embedding))}


def test_embeddings_are_stored_as_float32_and_read_back(client: Any, sessions: sessionmaker[Session]) -> None:
    put = client.put(f"{ITEMS}/a", json={"title": "A", "embedding": [0.1, -2, 3.5]})
    assert put.status_code == 201 and put.json["embedding"] == [0.1, -2.0, 3.5] and put.json["features"] == {"title": "A"}
    assert client.post(ITEMS, json={"items": [{"id": "b", "embedding": [1, 0, 0]}, {"id": "c"}]}).status_code == 200
    with sessions() as session:
        assert len(session.get_one(Item, "a").embedding) == 12  # 3 float32
    assert _vectors(sessions) == {"a": pytest.approx([0.1, -2.0, 3.5]), "b": [1.0, 0.0, 0.0], "c": None}
    assert "embedding" not in client.get(f"{ITEMS}/c").json
    # absent or null keeps the vector; [] removes it
    assert client.put(f"{ITEMS}/a", json={"title": "A2"}).json["embedding"] == [0.1, -2.0, 3.5]
    assert client.put(f"{ITEMS}/a", json={"title": "A2", "embedding": None}).json["embedding"] == [0.1, -2.0, 3.5]
    assert "embedding" not in client.put(f"{ITEMS}/a", json={"embedding": []}).json
    with sessions() as session:
        data = load_training_data(session)
    assert data.item_vectors is not None and data.item_vectors.shape == (3, 3)
    assert data.item_vectors[data.item_index["b"]].tolist() == [1.0, 0.0, 0.0] and not data.item_vectors[data.item_index["a"]].any()


def test_a_vector_of_the_wrong_dimension_is_a_422_naming_expected_and_got(client: Any, sessions: sessionmaker[Session]) -> None:
    assert client.put(f"{ITEMS}/a", json={"embedding": [1, 2, 3]}).status_code == 201
    wrong = client.put(f"{ITEMS}/b", json={"embedding": [1, 2]})
    assert wrong.status_code == 422 and wrong.json["error"]["target"] == "embedding"
    assert wrong.json["error"]["code"] == "DimensionMismatch" and "expected 3, got 2" in wrong.json["error"]["message"]
    bulk = client.post(ITEMS, json={"items": [{"id": "c", "embedding": [1, 2, 3]}, {"id": "d", "embedding": [1, 2, 3, 4]}]})
    assert bulk.status_code == 422 and bulk.json["error"]["target"] == "items[1].embedding"
    assert "items[1].embedding" in bulk.json["error"]["message"] and "expected 3, got 4" in bulk.json["error"]["message"]
    assert set(_vectors(sessions)) == {"a"}, "nothing stored half-way"


def test_the_first_upload_sets_the_dimension_of_an_empty_catalog(client: Any, sessions: sessionmaker[Session]) -> None:
    bulk = client.post(ITEMS, json={"items": [{"id": "a", "embedding": [1, 2]}, {"id": "b"}, {"id": "c", "embedding": [1, 2, 3]}]})
    assert bulk.status_code == 422 and "items[2].embedding" in bulk.json["error"]["message"]
    # a bad row is a 400 first, whatever the dimensions
    assert client.post(ITEMS, json={"items": [{"id": "a", "embedding": [1, 2]}, {"id": "c", "embedding": [1, 2, 3]},
                                              {"id": "_", "features": {"_x": 1}}]}).status_code == 400
    assert "first vector in this upload has 2" in bulk.json["error"]["message"]
    assert _count(sessions, Item) == 0
    # removing every vector frees the dimension for another model
    assert client.post(ITEMS, json={"items": [{"id": "a", "embedding": [1, 2]}]}).status_code == 200
    assert client.put(f"{ITEMS}/a", json={"embedding": []}).status_code == 200
    assert client.put(f"{ITEMS}/a", json={"embedding": [1, 2, 3, 4]}).status_code == 200


@pytest.mark.parametrize("bad, why", [
    ("0.5", "is invalid"), ([1, "2"], "is invalid"), ([1, True], "is invalid"), ([[1.0]], "is invalid"),
    ([1e39], "is invalid"), ([0, 0, 0], "not all zeros"), ([0, 1e-31, -1e-40], "not all zeros"), ({"x": 1}, "is invalid"),
    (list(range(1, 4098)), "is invalid"),
])
def test_embeddings_that_are_not_finite_vectors_are_a_400(client: Any, sessions: sessionmaker[Session], bad: Any,
                                                         why: str) -> None:
    for response in (client.put(f"{ITEMS}/a", json={"embedding": bad}),
                     client.post(ITEMS, json={"items": [{"id": "a", "embedding": bad}]})):
        assert response.status_code == 400, response.json
        assert "embedding" in response.json["error"]["message"] and why in response.json["error"]["message"]
    assert _count(sessions, Item) == 0


def test_parse_item_checks_embeddings_without_the_schema() -> None:
    """The same rules for `personalize import` (no JSON schema in front of it)."""
    for bad, message in [([1, float("nan")], r"embedding\[1\] must be a finite number"), ([1, float("inf")], "finite"),
                         ("1 2", "must be a list of numbers"), ([1, "x"], r"embedding\[1\]"), ([0.0, 0.0], "all zeros"),
                         ([1e-31, -1e-40], "all zeros"),
                         ([1.0] * 4097, "at most 4096")]:
        with pytest.raises(InvalidRow, match=message) as error:
            parse_item({"id": "a", "embedding": bad})
        assert error.value.field == "embedding"
    assert parse_item({"id": "a", "embedding": []}).embedding == b""
    assert parse_item({"id": "a"}).embedding is None
    with pytest.raises(InvalidRow, match="misspelled embedding"):
        parse_item({"id": "a", "Embeddings": [1.0]})


def test_import_items_with_embeddings(tmp_path: Path, database_url: str, sessions: sessionmaker[Session]) -> None:
    runner = CliRunner()
    csv_file = _write(tmp_path / "items.csv", 'id,title,embedding\na,A,0.5 1 -1\nb,B,"1,2,3"\nc,C,\nd,D,1 2\ne,E,1 x 3\n')
    result = runner.invoke(cli, ["import", "items", str(csv_file), "--database-url", database_url])
    assert result.exit_code == 1
    assert "line 5: embedding:" in result.output and "expected 3, got 2" in result.output
    assert "line 6: embedding: embedding must be numbers" in result.output
    assert "items: loaded 3, rejected 2" in result.output
    lines = [{"id": "f", "embedding": [3, 2, 1]}, {"id": "g", "embedding": [1, 2, 3, 4]}]
    jsonl = _write(tmp_path / "items.jsonl", "\n".join(json.dumps(line) for line in lines) + "\n")
    result = runner.invoke(cli, ["import", "items", str(jsonl), "--all-or-nothing", "--database-url", database_url])
    assert result.exit_code == 1 and "line 2: embedding:" in result.output and "catalog's stored vectors have 3" in result.output
    assert _vectors(sessions) == {"a": [0.5, 1.0, -1.0], "b": [1.0, 2.0, 3.0], "c": None}


def test_migration_adds_the_embedding_column_and_keeps_items(database_url: str) -> None:
    from sqlalchemy import inspect, text

    engine = make_engine(database_url)
    upgrade_schema(engine, "0003")
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO items (id, features, created_at, updated_at, active) "
                                "VALUES ('old', '{\"t\": 1}', 1.0, 1.0, true)"))
    upgrade_schema(engine)
    sessions = make_sessionmaker(engine)
    with sessions() as session:
        old = session.get_one(Item, "old")
        assert old.features == {"t": 1} and old.embedding is None
        upsert_items(session, [parse_item({"id": "old", "embedding": [1.0, 2.0]})])
        session.commit()
        assert catalog.catalog_dimension(session) == 2
        assert "embedding" in {c["name"] for c in inspect(session.connection()).get_columns("items")}
    from alembic import command
    from alembic.config import Config

    from personalize.db import MIGRATIONS

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:  # and back down
        config.attributes["connection"] = connection
        command.downgrade(config, "0003")
    with engine.connect() as connection:
        assert "embedding" not in {c["name"] for c in inspect(connection).get_columns("items")}
    engine.dispose()
