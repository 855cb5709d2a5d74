"""Database outages: tell "the database is unreachable" from a bug, and remember which it is.

While the database is unreachable the API answers 503 ``ServiceUnavailable`` with ``Retry-After``
(clients, and both Microsoft SDKs, retry), ``/health`` answers 503 so load balancers route
elsewhere, and the log gets one line when the database goes away and one when it is back, not a
traceback per request or per background round. A 201/204 is sent only after its commit, so a
refused call was never acknowledged and nothing acknowledged is lost.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time

import psycopg
from sqlalchemy import Engine
from sqlalchemy import exc as sa_exc

__all__ = ["DatabaseHealth", "is_unavailable", "is_sqlite_outage", "describe", "RETRY_AFTER_SECONDS", "PROBE_INTERVAL",
           "QUIET_PERIOD", "OUTAGE_BACKOFF"]

log = logging.getLogger("personalize.database")

#: Seconds a client is told to wait before retrying a call refused during an outage.
RETRY_AFTER_SECONDS = 5
#: ``/health`` runs its query at most this often; in between it answers from the last result.
PROBE_INTERVAL = 1.0
#: The database counts as back at a success with no failure for this long: the first moments of
#: an outage (or of a recovery) mix successes and failures, and should not flap the state.
QUIET_PERIOD = 1.0
#: Background loops retry at most this often while the database is unreachable.
OUTAGE_BACKOFF = 1.0

#: SQLite primary result codes of a database that cannot be used right now (not of a bad query):
#: BUSY (locked past busy_timeout), READONLY (e.g. file system remounted read-only), IOERR,
#: FULL (disk full), CANTOPEN ("unable to open database file").
_SQLITE_OUTAGE = {5, 8, 10, 13, 14}
#: ... and those after which the connection itself is suspect and should be replaced.
_SQLITE_RECONNECT = {8, 10, 14}
#: PostgreSQL SQLSTATE classes of an unreachable or unusable server: 08 connection exception,
#: 53 insufficient resources (too many connections, disk full), 57P operator intervention
#: (shutdown, terminated, cannot connect now), 58 system error (I/O), 3D000 no such database.
_PG_OUTAGE = ("08", "53", "57P", "58", "3D000")


def _sqlite_code(error: BaseException) -> int | None:
    code = getattr(error, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def is_sqlite_outage(error: BaseException, reconnect: bool = False) -> bool:
    """A sqlite3 error that says the file cannot be used now (``reconnect``: and the connection should go)."""
    return isinstance(error, sqlite3.Error) and _sqlite_code(error) in (_SQLITE_RECONNECT if reconnect else _SQLITE_OUTAGE)


def _driver_outage(error: BaseException) -> bool:
    if isinstance(error, psycopg.InterfaceError):  # e.g. "the connection is closed"
        return True
    if isinstance(error, psycopg.OperationalError):
        # Failed connection attempts carry no SQLSTATE; serialization failures, deadlocks and
        # cancelled statements (class 40, 57014) are OperationalErrors too, but not outages.
        state = error.sqlstate
        return state is None or state.startswith(_PG_OUTAGE)
    return is_sqlite_outage(error)


def is_unavailable(error: BaseException) -> bool:
    """True when ``error`` (or what caused it) means the database cannot be reached or used right
    now, so the call may succeed later: a 503, not a bug (500)."""
    seen = 0
    current: BaseException | None = error
    while current is not None and seen < 5:
        if isinstance(current, sa_exc.TimeoutError):  # no pooled connection within pool_timeout
            return True
        if isinstance(current, sa_exc.DBAPIError):
            if current.connection_invalidated:
                return True
            if current.orig is not None and _driver_outage(current.orig):
                return True
        elif _driver_outage(current):
            return True
        current = current.__cause__ or current.__context__
        seen += 1
    return False


def describe(error: BaseException) -> str:
    """The first line of the driver's message, without SQLAlchemy's SQL and background link."""
    orig = getattr(error, "orig", None) or error
    text = str(orig).strip().splitlines()
    return f"{type(orig).__name__}: {text[0] if text else ''}".rstrip(": ")


class DatabaseHealth:
    """Whether the database answers, known from failed calls, successful writes and a cached probe.

    ``lost``/``back`` log the transitions (once each). ``probe`` answers ``/health`` with at most
    one query per PROBE_INTERVAL, whatever the load balancers' rate, and never makes a second
    caller wait for a probe under way. A success (a write, or the probe; reads do not count)
    declares the database back only after QUIET_PERIOD without a failure: while connections
    still die one by one, or reads work but writes fail (SQLite: disk full, a lock held too
    long), the state stays "unavailable" instead of flapping.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._query = "SELECT 1 FROM sqlite_master LIMIT 1" if engine.dialect.name == "sqlite" else "SELECT 1"
        self.available = True
        self._since = 0.0
        self._failed_at = float("-inf")
        self._checked = float("-inf")
        self._lock = threading.Lock()
        self._probing = threading.Lock()

    def lost(self, error: BaseException) -> None:
        with self._lock:
            self._failed_at = time.monotonic()
            if not self.available:
                return
            self.available = False
            self._since = time.monotonic()
        log.warning("database unavailable (%s); answering 503 until it is back", describe(error))

    def back(self) -> None:
        with self._lock:
            if self.available or time.monotonic() - self._failed_at < QUIET_PERIOD:
                return
            self.available = True
            seconds = time.monotonic() - self._since
        log.warning("database available again after %.1f s", seconds)

    def failed(self, error: BaseException) -> bool:
        """Record ``error`` if it is an outage (True: the caller logs nothing more); False for a bug."""
        if not is_unavailable(error):
            return False
        self.lost(error)
        return True

    def probe(self) -> bool:
        """True when the database answered a trivial query within the last PROBE_INTERVAL."""
        now = time.monotonic()
        if now - self._checked < PROBE_INTERVAL or not self._probing.acquire(blocking=False):
            return self.available
        try:
            self._checked = now
            try:
                with self._engine.connect() as connection:
                    connection.exec_driver_sql(self._query).close()
                    connection.rollback()
            except Exception as error:  # any failure of SELECT 1 means the database cannot serve
                self.lost(error)
            else:
                self.back()
        finally:
            self._probing.release()
        return self.available
