"""Scale-out benchmark on PostgreSQL: `python bench/scale.py [--seconds 4] [--repeats 2]`.

Several server processes and one learner process sharing one PostgreSQL database, as in
docs/deploy.md. Prints, in one run (this machine is noisy, so everything is a ratio to a baseline
measured in the same round):

  rank throughput with 1 and with 2 server processes (gunicorn workers, `--workers N`), each against
  the bare endpoint of the same server (reads the same body, answers, touches no database);
  the learner runs as its own `personalize learn` process throughout; and, for scale, 1 server
  process on a SQLite file (the default store; its own learner process too)
  the database cost of one Rank and one Reward, in-process (one call at a time): statements,
  transactions, connection checkouts (each a pre-ping round trip), and milliseconds in the database
  transaction (checkout, statements, COMMIT with its WAL flush; client-observed on loopback) against
  the whole call, counted with SQLAlchemy's events and by timing ``Database.transaction()``
  the database-only ceiling: Rank+Reward pairs per second when client processes run exactly the store
  calls of Rank and Reward (same rows, same transactions) with no HTTP and no VW: what this PostgreSQL
  sustains for this workload on this machine

docs/deploy.md ("Scaling out") turns these into a projection. A fresh database named
``<--db-prefix><random>`` is created on the server of ``--postgres-url`` and dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from contextlib import contextmanager
from typing import Any, Iterator

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url

import service as bench  # bench/service.py: the bare endpoint, the load clients

REWARD = {"value": 1.0}


def serve(port: int, url: str, workers: int, threads: int) -> None:
    """`personalize serve --workers N` with PERSONALIZE_LEARNER=off (the learner is the run's own process)."""
    os.environ.update({"PERSONALIZE_DATABASE_URL": url, "PERSONALIZE_REWARD_WAIT_TIME": "600", "PERSONALIZE_LEARNER": "off",
                       "PERSONALIZE_API_KEYS": bench.CLIENT_KEY, "PERSONALIZE_ADMIN_KEYS": bench.ADMIN_KEY})
    from personalize.server import run_server

    run_server("127.0.0.1", port, workers=workers, threads=threads, app_factory=bench.bench_app)


def start_server(url: str, workers: int, threads: int) -> tuple[Any, int]:
    port = bench.free_port()
    process = mp.Process(target=serve, args=(port, url, workers, threads), daemon=True)
    process.start()
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if bench.post(port, "/bench/bare", b"{}")[0] == 201:
                return process, port
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not start within 60 s")


class Counter:
    """Statements, transactions, checkouts and time on one Database: statements through SQLAlchemy's cursor
    events, whole transactions (checkout and pre-ping, statements, COMMIT and its WAL flush) by timing
    ``Database.transaction()``, which Rank and Reward use."""

    def __init__(self, db: Any) -> None:
        engine = db.engine
        self.statements = self.commits = self.checkouts = 0
        self.seconds = self.transaction_seconds = 0.0
        self._started: list[float] = []
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)
        event.listen(engine, "commit", self._commit)
        event.listen(engine.pool, "checkout", self._checkout)
        transaction = db.transaction

        @contextmanager
        def timed() -> Iterator[Any]:
            started = time.perf_counter()
            try:
                with transaction() as connection:
                    yield connection
            finally:
                self.transaction_seconds += time.perf_counter() - started

        db.transaction = timed

    def _before(self, *_: Any) -> None:
        self._started.append(time.perf_counter())

    def _after(self, *_: Any) -> None:
        self.statements += 1
        self.seconds += time.perf_counter() - self._started.pop()

    def _commit(self, *_: Any) -> None:
        self.commits += 1

    def _checkout(self, *_: Any) -> None:
        self.checkouts += 1

    def snapshot(self) -> tuple[int, int, int, float, float]:
        return self.statements, self.commits, self.checkouts, self.seconds, self.transaction_seconds


def database_cost(url: str, n: int) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """Per-call database work of Rank and Reward in the real service; also one stored event's values."""
    from personalize import store
    from personalize.app import create_app
    from personalize.config import load_settings

    app = create_app(load_settings({"database_url": url, "learner": "off", "reward_wait_time": 600}, env={}), start=False)
    service = app.extensions["personalize"]
    captured: dict[str, Any] = {}
    insert = store.insert_event

    def capture(session: Any, values: dict[str, Any]) -> None:
        captured.setdefault("values", dict(values))
        insert(session, values)

    store.insert_event = capture  # type: ignore[assignment]
    body = json.loads(bench.rank_body())
    for _ in range(20):  # warm-up: pool connections, compiled statements
        service.reward(service.rank(body)["eventId"], REWARD)
    counter = Counter(service.db)
    cost: dict[str, dict[str, float]] = {}
    ids = []
    before = (*counter.snapshot(), time.perf_counter())
    for _ in range(n):
        ids.append(service.rank(body)["eventId"])
    cost["rank"] = _per_call(before, (*counter.snapshot(), time.perf_counter()), n)
    before = (*counter.snapshot(), time.perf_counter())
    for event_id in ids:
        service.reward(event_id, REWARD)
    cost["reward"] = _per_call(before, (*counter.snapshot(), time.perf_counter()), n)
    store.insert_event = insert  # type: ignore[assignment]
    service.close()
    return cost, captured["values"]


def _per_call(before: tuple[Any, ...], after: tuple[Any, ...], n: int) -> dict[str, float]:
    return {"statements": (after[0] - before[0]) / n, "transactions": (after[1] - before[1]) / n,
            "checkouts": (after[2] - before[2]) / n, "statement_ms": 1000 * (after[3] - before[3]) / n,
            "transaction_ms": 1000 * (after[4] - before[4]) / n, "call_ms": 1000 * (after[5] - before[5]) / n}


def _db_client(url: str, values: dict[str, Any], seconds: float, out: Any) -> None:
    """Rank's and Reward's store calls in their own transactions, back to back."""
    from personalize import store
    from personalize.db import Database

    db = Database(url)
    done = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        event_id = uuid.uuid4().hex
        with db.transaction() as connection:
            store.insert_event(connection, {**values, "event_id": event_id, "created_at": time.time()})
        with db.transaction() as connection:
            store.add_reward(connection, event_id, 1.0, time.time(), "earliest")
        done += 1
    out.put((done, time.perf_counter() - start))
    db.dispose()


def database_ceiling(url: str, values: dict[str, Any], seconds: float, clients: int) -> float:
    queue: Any = mp.Queue()
    procs = [mp.Process(target=_db_client, args=(url, values, seconds, queue)) for _ in range(clients)]
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    return sum(r[0] for r in results) / max(r[1] for r in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=4.0, help="duration of each load phase")
    parser.add_argument("--repeats", type=int, default=2, help="rounds of every phase; rows show the median")
    parser.add_argument("--clients", type=int, default=4, help="client processes per load phase")
    parser.add_argument("--threads", type=int, default=4, help="threads per server process")
    parser.add_argument("--postgres-url", default=os.environ.get("PERSONALIZE_TEST_POSTGRES_URL",
                                                                 "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"),
                        help="a PostgreSQL server (any database on it; the benchmark creates its own)")
    parser.add_argument("--db-prefix", default="pz_scale_", help="name prefix of the benchmark's database")
    parser.add_argument("--cost-calls", type=int, default=300, help="Rank and Reward calls measured for the per-call cost")
    args = parser.parse_args()

    admin = create_engine(args.postgres_url, isolation_level="AUTOCOMMIT")
    name = f"{args.db_prefix}{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(args.postgres_url).set(database=name).render_as_string(hide_password=False)
    learner = None
    try:
        from personalize.db import Database

        database = Database(url)
        database.upgrade()
        database.dispose()
        learner = subprocess.Popen([sys.executable, "-m", "personalize", "learn", "--database-url", url],
                                   env={**os.environ, "PERSONALIZE_REWARD_WAIT_TIME": "600"}, stdout=subprocess.DEVNULL)
        print(f"PostgreSQL database {name}; one learner process; {args.clients} client processes; "
              f"{args.seconds:.0f} s per phase, {args.repeats} rounds; {os.cpu_count()} CPUs; load average "
              f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
        sqlite_dir = tempfile.mkdtemp(prefix="personalize-scale-")
        sqlite_url = f"sqlite:///{sqlite_dir}/personalize.db"
        sqlite_learner = subprocess.Popen([sys.executable, "-m", "personalize", "learn", "--database-url", sqlite_url],
                                          env={**os.environ, "PERSONALIZE_REWARD_WAIT_TIME": "600"}, stdout=subprocess.DEVNULL)
        rps: dict[tuple[int, str], list[float]] = {}
        for round_ in range(args.repeats):
            for workers in (0, 1, 2):  # 0: one process on SQLite
                server, port = start_server(sqlite_url if workers == 0 else url, max(workers, 1), args.threads)
                bench.load(port, "rank", 1.0, args.clients)  # warm-up
                bare, _ = bench.load(port, "bare", args.seconds, args.clients)
                rank, _ = bench.load(port, "rank", args.seconds, args.clients)
                rps.setdefault((workers, "bare"), []).append(bare)
                rps.setdefault((workers, "rank"), []).append(rank)
                server.terminate()
                server.join(20)
                shown = "1 server process on SQLite" if workers == 0 else f"{workers} server process(es)"
                print(f"round {round_ + 1}, {shown}: rank {rank:.0f} req/s, bare {bare:.0f} req/s, "
                      f"rank/bare {rank / bare:.2f}", flush=True)
        sqlite_learner.terminate()
        sqlite_learner.wait(15)
        cost, values = database_cost(url, args.cost_calls)
        ceilings = [database_ceiling(url, values, args.seconds, args.clients) for _ in range(args.repeats)]
    finally:
        if learner is not None:
            learner.terminate()
            learner.wait(15)
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    def med(key: tuple[int, str]) -> float:
        return statistics.median(rps[key])

    print()
    print(f"{'measure':52s} {'median':>10s} {'rounds':>24s}")
    for workers in (0, 1, 2):
        ratios = [r / b for r, b in zip(rps[(workers, "rank")], rps[(workers, "bare")])]
        shown = "1 server process, SQLite" if workers == 0 else f"{workers} server process(es), PostgreSQL"
        print(f"{f'rank req/s, {shown}':52s} {med((workers, 'rank')):10.0f} "
              f"{' '.join(f'{x:.0f}' for x in rps[(workers, 'rank')]):>24s}")
        print(f"{f'  / bare endpoint, same server':52s} {statistics.median(ratios):10.2f} "
              f"{' '.join(f'{x:.2f}' for x in ratios):>24s}")
    on_pg = [pg / lite for lite, pg in zip(rps[(0, "rank")], rps[(1, "rank")])]
    print(f"{'rank throughput, 1 process: PostgreSQL / SQLite':52s} {statistics.median(on_pg):10.2f} "
          f"{' '.join(f'{x:.2f}' for x in on_pg):>24s}")
    scale = [r2 / r1 for r1, r2 in zip(rps[(1, "rank")], rps[(2, "rank")])]
    print(f"{'rank throughput, 2 processes / 1 process':52s} {statistics.median(scale):10.2f} "
          f"{' '.join(f'{x:.2f}' for x in scale):>24s}")
    print(f"{'database-only ceiling, Rank+Reward pairs/s':52s} {statistics.median(ceilings):10.0f} "
          f"{' '.join(f'{x:.0f}' for x in ceilings):>24s}")
    print()
    print(f"per call ({args.cost_calls} calls, in-process, PostgreSQL on loopback):")
    for op, c in cost.items():
        print(f"  {op:7s} {c['statements']:.2f} statements, {c['transactions']:.2f} transactions, "
              f"{c['checkouts']:.2f} pool checkouts (each a pre-ping round trip); {c['transaction_ms']:.2f} ms in the "
              f"database transaction ({c['statement_ms']:.2f} ms in statements, the rest checkout, ping and COMMIT) "
              f"of {c['call_ms']:.2f} ms per call")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
