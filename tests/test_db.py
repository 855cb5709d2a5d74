"""Database: SQLite's WAL is checkpointed in the background, never inside a request's commit."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import text

from personalize import db as dbmod
from personalize.db import Database


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
