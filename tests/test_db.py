"""Database: SQLite's WAL is checkpointed in the background, never inside a request's commit; write transactions share one connection."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import inspect, text

from alembic.script import ScriptDirectory

from personalize import db as dbmod
from personalize.db import Database

#: The newest migration: what every upgrade ends at.
HEAD = ScriptDirectory(str(dbmod.MIGRATIONS)).get_current_head()


def test_sqlite_checkpoints_in_the_background_and_stops_with_dispose(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        assert database._checkpointer is not None and database._checkpointer.is_alive()
        with database.transaction() as connection:
            assert connection.execute(text("PRAGMA wal_autocheckpoint")).scalar() == dbmod.WAL_AUTOCHECKPOINT_PAGES
            connection.execute(text("CREATE TABLE t (x TEXT)"))
            for _ in range(50):
                connection.execute(text("INSERT INTO t VALUES (:x)"), {"x": "y" * 4000})
        assert database._written
        deadline = time.time() + 5
        while database._written and time.time() < deadline:
            time.sleep(0.05)
        assert not database._written  # the checkpointer took the commit
        with database.reading() as connection:
            assert connection.execute(text("SELECT count(*) FROM t")).scalar() == 50
    finally:
        database.dispose()
    assert not database._checkpointer.is_alive()


def test_no_checkpointer_for_memory_databases() -> None:
    database = Database("sqlite://")
    assert database._checkpointer is None
    database.dispose()


def test_sqlite_write_transactions_share_one_connection_and_recover_from_failures(tmp_path: Path) -> None:
    """transaction() reuses one connection on SQLite: a rolled-back transaction leaves it usable,
    an invalidated one is replaced, concurrent writers lose nothing, and dispose() closes it."""
    import threading

    database = Database(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with database.transaction() as connection:
            connection.execute(text("CREATE TABLE t (x INTEGER PRIMARY KEY)"))
        first = database._writer
        assert first is not None
        try:
            with database.transaction() as connection:
                connection.execute(text("INSERT INTO t VALUES (1)"))
                connection.execute(text("INSERT INTO t VALUES (1)"))  # integrity error: all rolled back
        except Exception:
            pass
        with database.transaction() as connection:
            assert connection is first
            assert connection.execute(text("SELECT count(*) FROM t")).scalar() == 0
        try:
            with database.transaction() as connection:
                connection.invalidate()
                raise RuntimeError("disk went away")
        except RuntimeError:
            pass
        assert database._writer is None and first.closed

        def write(start: int) -> None:
            for i in range(start, start + 200):
                with database.transaction() as connection:
                    connection.execute(text("INSERT INTO t VALUES (:x)"), {"x": i})

        threads = [threading.Thread(target=write, args=(k * 1000,)) for k in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        with database.reading() as connection:
            assert connection.execute(text("SELECT count(*) FROM t")).scalar() == 800
        writer = database._writer
        assert writer is not None and writer is not first
    finally:
        database.dispose()
    assert database._writer is None and writer.closed


def test_moving_examples_out_of_the_event_rows_keeps_every_example(database_url: str) -> None:
    """Migration 0002 on a database that already holds events: each example arrives intact in
    event_examples, Event.example reads it, and a new Rank stores one too."""
    from sqlalchemy import select

    from personalize import store
    from personalize.db import make_engine, upgrade_schema
    from personalize.models import Event

    engine = make_engine(database_url)
    upgrade_schema(engine, "0001")
    examples = {f"old-{i}": '{"c_user":{"n":%d},"_multi":[{"a":{"k":"x"}}]}' % i for i in range(3)}
    with engine.begin() as connection:
        for event_id, example in examples.items():
            connection.execute(text(
                "INSERT INTO events (event_id, created_at, example, action_ids, excluded_ids, ranking, probabilities, "
                "chosen_index, probability, model_version, deferred, reward_count) VALUES "
                "(:e, 1.0, :x, '[\"a\"]', '[]', '[0]', '[1.0]', 0, 1.0, 0, false, 0)"
            ), {"e": event_id, "x": example})
    engine.dispose()

    database = Database(database_url)
    try:
        database.upgrade()
        with database.transaction() as connection:
            store.insert_event(connection, dict(
                event_id="new", created_at=2.0, user_id=None, example='{"_multi":[{}]}', action_ids=["a"],
                excluded_ids=[], ranking=[0], probabilities=[1.0], chosen_index=0, probability=1.0, model_version=0,
                extra=None, deferred=False, activated_at=2.0, wait_until=3.0, ready_at=3.0,
            ))
        with database.read() as session:
            stored = {e.event_id: e.example for e in session.execute(select(Event)).scalars()}
            columns = {c["name"] for c in inspect(session.connection()).get_columns("events")}
    finally:
        database.dispose()
    assert stored == {**examples, "new": '{"_multi":[{}]}'}
    assert "example" not in columns


def test_processes_upgrading_a_fresh_database_at_once_all_succeed(database_url: str, tmp_path: Path) -> None:
    """`personalize serve` on two hosts started together: both run the migrations on the same empty
    database. Without the lock in upgrade_schema one crashed (UniqueViolation on alembic_version)."""
    import subprocess
    import sys

    from sqlalchemy import create_engine

    script = ("import sys; from personalize.db import Database; d = Database(sys.argv[1]); "
              "sys.stdin.read(1); d.upgrade(); d.dispose()")
    for attempt in range(4):
        url = database_url
        if url.startswith("sqlite"):
            url = f"sqlite:///{tmp_path / f'race{attempt}.db'}"
        elif attempt:  # a fresh PostgreSQL database each round
            engine = create_engine(url)
            with engine.begin() as connection:
                connection.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
            engine.dispose()
        processes = [subprocess.Popen([sys.executable, "-c", script, url], stdin=subprocess.PIPE, stderr=subprocess.PIPE)
                     for _ in range(3)]
        time.sleep(1.0)  # every process imported and connected: released together, they race
        for process in processes:
            process.stdin.write(b"x")  # type: ignore[union-attr]
            process.stdin.flush()  # type: ignore[union-attr]
        for process in processes:
            _, err = process.communicate(timeout=60)
            assert process.returncode == 0, err.decode()[-2000:]
        engine = create_engine(url)
        with engine.connect() as connection:
            assert connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [HEAD]
            assert {"events", "event_examples", "rewards"} <= set(inspect(connection).get_table_names())
        engine.dispose()
