"""Engine creation and schema upgrades. Session lifecycles stay with the callers."""

from __future__ import annotations

import sqlite3
import threading
import time
import weakref
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, ContextManager, Iterator

import orjson
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import sessionmaker, Session

from personalize.db_health import DatabaseHealth, is_sqlite_outage, is_unavailable

if TYPE_CHECKING:
    from personalize.config import Settings

__all__ = ["Database", "make_engine", "upgrade_schema", "make_sessionmaker"]

MIGRATIONS = Path(__file__).parent / "migrations"

#: SQLite WAL pages after which a committing connection checkpoints by itself. A Database
#: checkpoints in a background thread long before that (CHECKPOINT_INTERVAL), so commits never
#: pay for a checkpoint's copy and fsync while holding the write lock; this is the backstop
#: for processes that run no such thread.
WAL_AUTOCHECKPOINT_PAGES = 10_000
CHECKPOINT_INTERVAL = 0.25
#: SQLite: how long a writer waits for another process's write lock before giving up (a 503).
SQLITE_BUSY_TIMEOUT = 30.0
#: PostgreSQL: the advisory lock key that serializes schema upgrades (any constant; "pz-migr" in ASCII).
MIGRATION_LOCK_KEY = 0x707A2D6D696772
#: PostgreSQL: seconds to wait for a new connection (libpq waits for the OS's TCP timeout, minutes,
#: by default): a database that does not answer is an outage, not a request hung for minutes.
POSTGRES_CONNECT_TIMEOUT = 10


def _json_dumps(value: object) -> str:
    return orjson.dumps(value).decode()


def _wal(cursor: sqlite3.Cursor) -> None:
    """Turn on WAL. On a new database file SQLite answers "database is locked" at once, without its busy
    handler, while another process holds the write lock (servers started together, one migrating):
    retry for as long as a writer would wait."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def make_engine(url: str, sqlite_synchronous: str = "NORMAL") -> Engine:
    """An engine with the pragmas/pool settings each backend needs to be safe under load."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT, "check_same_thread": False},
            json_serializer=_json_dumps, json_deserializer=orjson.loads,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            # Let SQLAlchemy own transactions (pysqlite's implicit BEGIN is off, we emit our own).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            _wal(cursor)
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA synchronous={sqlite_synchronous.upper()}")
            cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT * 1000)}")
            cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):  # type: ignore[no-untyped-def]
            # Writers take the lock up front (IMMEDIATE): no deadlock-prone upgrades mid-transaction.
            # Readers (execution option readonly=True) start deferred and never block writers in WAL.
            # Straight to the driver: this runs for every transaction, and SQLAlchemy's execute
            # machinery would cost more than SQLite's BEGIN itself.
            conn.connection.dbapi_connection.execute("BEGIN" if conn.get_execution_options().get("readonly") else "BEGIN IMMEDIATE")

        @event.listens_for(engine, "handle_error")
        def _sqlite_disconnect(context):  # type: ignore[no-untyped-def]
            # An I/O error, a read-only or unopenable file: replace the connection (and the pool's
            # older ones) as SQLAlchemy does for a lost server connection; the file may be back anew.
            if is_sqlite_outage(context.original_exception, reconnect=True):
                context.is_disconnect = True

        return engine
    connect_args = {} if "connect_timeout" in parsed.query else {"connect_timeout": POSTGRES_CONNECT_TIMEOUT}
    return create_engine(
        url, pool_pre_ping=True, pool_size=10, max_overflow=20, connect_args=connect_args,
        json_serializer=_json_dumps, json_deserializer=orjson.loads,
    )


def make_sessionmaker(engine: Engine, readonly: bool = False) -> sessionmaker[Session]:
    """Sessions for writing, or (``readonly``) for reading without taking SQLite's write lock."""
    bind = engine.execution_options(readonly=True) if readonly else engine
    return sessionmaker(bind, expire_on_commit=False)


def upgrade_schema(engine: Engine, revision: str = "head") -> None:
    """Bring the database to the newest schema with Alembic (idempotent, and safe when several
    processes upgrade the same database at once).

    Servers started together on a fresh database all run the migrations; unserialized, one crashed
    on PostgreSQL creating ``alembic_version`` twice (UniqueViolation). PostgreSQL: a transaction-level
    advisory lock makes the others wait, then find the schema current (the upgrade's DDL commits
    with the lock's release). SQLite: the transaction starts with BEGIN IMMEDIATE (the engine's
    ``begin`` hook), which takes the database's write lock before Alembic reads anything.
    """
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)


def _checkpoint_loop(ref: "weakref.ref[Database]", stop: threading.Event) -> None:
    """Checkpoint the WAL of a file SQLite Database after writes; ends with it (or its dispose())."""
    connection = None
    try:
        while not stop.wait(CHECKPOINT_INTERVAL):
            db = ref()
            if db is None:
                return
            if not db._written:
                continue
            db._written = False
            try:
                if connection is None:
                    connection = db.engine.raw_connection()
                connection.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except Exception:  # e.g. the file is gone; the commits' own autocheckpoint is the backstop
                if connection is not None:
                    connection.invalidate()
                    connection = None
            del db
    finally:
        if connection is not None:
            connection.close()


class Database:
    """Engine plus the two ways to use it: ``write()`` transactions and ``read()`` sessions.

    SQLite allows one writer at a time and makes waiting writers sleep in millisecond steps;
    threads of one process therefore queue on a mutex instead, which hands over in microseconds.

    SQLite (file): a background thread checkpoints the WAL every CHECKPOINT_INTERVAL seconds
    (PASSIVE: it never blocks readers or writers, and runs without the GIL). Left to the
    committing connection, an automatic checkpoint every 1,000 pages copies and fsyncs the
    database inside a commit, under the write lock: milliseconds to tens of milliseconds for
    one unlucky request while every other writer waits. Durability is unchanged: a commit is
    in the WAL (and, with ``sqlite_synchronous=FULL``, synced) before it returns.
    """

    def __init__(self, url: str, sqlite_synchronous: str = "NORMAL") -> None:
        self.engine = make_engine(url, sqlite_synchronous)
        self.sessions = make_sessionmaker(self.engine)
        self.read = make_sessionmaker(self.engine, readonly=True)
        self._readonly_engine = self.engine.execution_options(readonly=True)
        self.health = DatabaseHealth(self.engine)
        self._lock: threading.Lock | None = threading.Lock() if self.engine.dialect.name == "sqlite" else None
        self._write_guard: ContextManager[object] = self._lock if self._lock is not None else nullcontext()
        self._stop = threading.Event()
        self._written = False  # commits since the last checkpoint
        self._writer: Connection | None = None  # SQLite: the connection transaction() reuses
        self._checkpointer: threading.Thread | None = None
        database = self.engine.url.database
        if self._lock is not None and database and database != ":memory:" and not database.startswith("file:"):
            self._checkpointer = threading.Thread(
                target=_checkpoint_loop, args=(weakref.ref(self), self._stop), name="personalize-wal-checkpoint", daemon=True
            )
            self._checkpointer.start()

    @classmethod
    def for_settings(cls, settings: "Settings") -> "Database":
        return cls(settings.resolved_database_url, settings.sqlite_synchronous)

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One write transaction: committed on success, rolled back on any exception."""
        with self._write_guard, self.sessions.begin() as session:
            yield session
        self._written = True
        if not self.health.available:
            self.health.back()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """``write()`` without the ORM: a Core connection in one write transaction, for the hot paths
        (Rank, Reward, learner steps), where a Session's bookkeeping costs more than the SQL.

        SQLite: every such transaction runs on one connection kept open for the process (writers
        take turns under the write mutex anyway). A pool checkout and return cost ~40 µs, more than
        the BEGIN and COMMIT themselves (measured: 55 µs per empty transaction against 16 µs).
        """
        if self._lock is None:
            with self.engine.begin() as connection:
                yield connection
            if not self.health.available:
                self.health.back()
            return
        with self._lock:
            connection = self._writer
            if connection is None:
                connection = self._writer = self.engine.connect()
            try:
                with connection.begin():
                    yield connection
            except BaseException as error:
                # A disk error, a lock held too long: the next transaction opens a new connection.
                if connection.invalidated or (isinstance(error, Exception) and is_unavailable(error)):
                    self._writer = None
                    connection.invalidate()
                    connection.close()
                raise
        self._written = True
        if not self.health.available:
            self.health.back()

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """``read()`` without the ORM: a Core connection in a read-only transaction."""
        with self._readonly_engine.begin() as connection:
            yield connection

    def upgrade(self) -> None:
        upgrade_schema(self.engine)

    def dispose(self) -> None:
        self._stop.set()
        if self._checkpointer is not None and self._checkpointer is not threading.current_thread():
            self._checkpointer.join(5)
        if self._lock is not None and self._lock.acquire(timeout=5):  # a stuck writer must not hang shutdown
            try:
                if self._writer is not None:
                    self._writer.close()
                    self._writer = None
            finally:
                self._lock.release()
        self.engine.dispose()
