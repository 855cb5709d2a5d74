"""Slow-client benchmark: `python bench/slow_clients.py [--slow 200] [--seconds 10] [--gthread]`.

Starts ``personalize serve`` on loopback (SQLite in a temp folder), then measures a prober's Rank
latency (fresh connection per call, 20 calls/s) twice in the same run: with no slow clients (the
baseline) and with ``--slow`` connections that each send one byte a second, half of them trickling
their headers forever and half trickling a body under a large Content-Length. Prints p50/p99,
their ratios to the baseline, errors, and the 1 s target. ``--gthread`` adds the same two rows for
the previous server model (gunicorn's gthread worker, 4 threads) for a before/after comparison.

The driver classes (``SlowClients``, ``probe``) are also used by tests/test_server.py.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

RANK_PATH = "/personalizer/v1.0/rank"
RANK_BODY = json.dumps({
    "contextFeatures": [{"user": {"segment": "s1", "device": "mobile"}}],
    "actions": [{"id": f"item-{i}", "features": [{"item": {"f": i, "kind": f"k{i % 3}"}}]} for i in range(10)],
}).encode()
TARGET_SECONDS = 1.0


class SlowClients:
    """``count`` loopback connections that each send one byte every ``interval`` seconds, from one thread.

    Even-numbered connections trickle an endless header line; odd ones send complete headers
    declaring a ``body_length``-byte body and trickle that. A connection the server closes is
    counted in ``closed_by_server`` and opened again, so the pressure stays at ``count``.
    """

    def __init__(self, port: int, count: int, interval: float = 1.0, body_length: int = 1_000_000) -> None:
        self.port = port
        self.count = count
        self.interval = interval
        self.body_length = body_length
        self.closed_by_server = 0
        self.bytes_sent = 0
        self._sockets: list[socket.socket | None] = [None] * count
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slow-clients", daemon=True)

    def _open(self, i: int) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if i % 2 == 0:  # headers: the request line and a header line that never ends
            sock.sendall(f"POST {RANK_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".encode())
        else:  # body: complete headers, then the body a byte at a time
            sock.sendall(f"POST {RANK_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {self.body_length}\r\n\r\n[".encode())
        sock.setblocking(False)
        return sock

    def start(self) -> "SlowClients":
        for i in range(self.count):
            self._sockets[i] = self._open(i)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for i, sock in enumerate(self._sockets):
                if self._stop.is_set():
                    return
                try:
                    if sock is None:
                        raise ConnectionError
                    if sock.recv(65536, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                        raise ConnectionError  # the server closed it (perhaps after an error response)
                except BlockingIOError:
                    pass  # nothing from the server: still open
                except OSError:
                    self._replace(i)
                    continue
                try:
                    sock.send(b"a" if i % 2 == 0 else b" ")
                    self.bytes_sent += 1
                except OSError:
                    self._replace(i)

    def _replace(self, i: int) -> None:
        old = self._sockets[i]
        if old is not None:
            old.close()
            self.closed_by_server += 1
        try:
            self._sockets[i] = self._open(i)
        except OSError:
            self._sockets[i] = None  # tried again on the next round

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        for sock in self._sockets:
            if sock is not None:
                sock.close()
        self._sockets = [None] * self.count

    def __enter__(self) -> "SlowClients":
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


@dataclass
class ProbeResult:
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def probe(port: int, seconds: float, rate: float = 20.0, timeout: float = 10.0) -> ProbeResult:
    """Rank calls at ``rate`` per second for ``seconds``, each on a fresh connection, like a new client.

    Latency runs from the scheduled send time, so a stalled server also delays (and counts
    against) the calls queued behind the stall. Any exception or status other than 201 is an error.
    """
    result = ProbeResult()
    start = time.perf_counter()
    sent = 0
    while (now := time.perf_counter()) < start + seconds:
        scheduled = start + sent / rate
        if scheduled > now:
            time.sleep(scheduled - now)
        sent += 1
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            conn.request("POST", RANK_PATH, body=RANK_BODY, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            if response.status != 201:
                result.errors.append(f"status {response.status}")
        except OSError as exc:
            result.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            conn.close()
        result.latencies.append(time.perf_counter() - scheduled)
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(port: int, data_dir: str, gthread: bool = False) -> subprocess.Popen[bytes]:
    """``personalize serve`` (or, with ``gthread``, the previous model: gunicorn gthread x 4 threads)."""
    env = {**os.environ, "PERSONALIZE_DATA_DIR": data_dir}
    if gthread:
        command = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--worker-class", "gthread",
                   "--threads", "4", "--no-control-socket", "personalize.app:create_app()"]
    else:
        command = [sys.executable, "-m", "personalize", "serve", "--port", str(port)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.time() + 30
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/personalizer/v1.0/health")
            if conn.getresponse().status == 200:
                return process
        except OSError:
            time.sleep(0.1)
    stop_server(process)
    raise RuntimeError("server did not start within 30 s")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        process.wait(5)


def measure(name: str, slow: int, seconds: float, gthread: bool) -> list[tuple[str, ProbeResult, int]]:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="personalize-slow-") as data_dir:
        process = start_server(port, data_dir, gthread)
        try:
            probe(port, 1.0)  # warm-up
            baseline = probe(port, seconds)
            with SlowClients(port, slow) as clients:
                time.sleep(3)  # every slow connection is open and has trickled a few bytes
                loaded = probe(port, seconds)
                closed = clients.closed_by_server
        finally:
            stop_server(process)
    return [(f"{name}, 0 slow clients", baseline, 0), (f"{name}, {slow} slow clients", loaded, closed)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slow", type=int, default=200, help="slow connections (half headers, half body)")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each probe phase")
    parser.add_argument("--gthread", action="store_true", help="also measure the previous model (gthread x 4)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # run the finally blocks: no server left behind

    rows = measure("personalize serve", args.slow, args.seconds, gthread=False)
    if args.gthread:
        rows += measure("gthread x 4 (before)", args.slow, args.seconds, gthread=True)
    print(f"prober: Rank (10 actions) at 20 calls/s, fresh connection each, {args.seconds:.0f} s per row; "
          f"slow clients send 1 byte/s (half headers, half a 1 MB body)")
    print(f"{'server, load':36s} {'calls':>6s} {'errors':>6s} {'p50 ms':>8s} {'p99 ms':>8s} {'p50 x':>7s} {'p99 x':>7s} "
          f"{'closed':>6s}  target p99 <= {TARGET_SECONDS:.0f} s, 0 errors")
    for i, (name, result, closed) in enumerate(rows):
        base = rows[i - i % 2][1]
        p50, p99 = result.percentile(0.5), result.percentile(0.99)
        ok = p99 <= TARGET_SECONDS and not result.errors
        print(f"{name:36s} {len(result.latencies):6d} {len(result.errors):6d} {1000 * p50:8.1f} {1000 * p99:8.1f} "
              f"{p50 / base.percentile(0.5):7.2f} {p99 / base.percentile(0.99):7.2f} {closed:6d}  "
              f"{'yes' if ok else 'NO'}{'  (' + result.errors[0] + ')' if result.errors else ''}")
    print("(closed: slow connections the server closed during the phase; each is reopened at once)")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
