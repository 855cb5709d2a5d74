"""Service benchmark: `python bench/service.py [--seconds 10]`.

Runs the real app under the production server (personalize/server.py: gunicorn with uvicorn
event-loop workers; default 1 worker, 4 threads, SQLite in a temp folder; ``--workers 2``
runs the learner as its own process, like ``personalize serve --workers 2``) and loads
it from separate client processes over loopback. API keys are on (every call sends a client key
in ``Ocp-Apim-Subscription-Key``; the bare baseline checks none, so the ratios include the key
check); ``--no-keys`` measures an open server. Every number is printed as a ratio to a
baseline measured in the same run (this machine is noisy) or next to its target. The phases
run ``--repeats`` times, each ratio against the baseline measured just before it, and each
row shows the median with the range:

  rank throughput   (50 actions x 10 features, durably logged) / bare endpoint   >= 0.5
  reward throughput / bare endpoint                                              >= 0.7
  rank p99 latency at half the maximum rank load                                 <= 10 ms
    (open loop, started once the learner has caught up with the reward phase)
  learner throughput on the same 50-action events                                >= 5,000 events/s
  reward-to-model delay (reward received -> served by a model that learned it)   <= 1 s
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ACTIONS = [{"id": f"item-{i}", "features": [{"item": {f"f{j}": round(0.1 * j + i, 3) for j in range(9)} | {"kind": f"k{i % 7}"}}]}
           for i in range(50)]
CONTEXT = [{"user": {"segment": "s1", "device": "mobile"}}, {"time": {"hour": 13}}]
CLIENT_KEY, ADMIN_KEY = "bench-client-key-0123456789abcdef", "bench-admin-key-0123456789abcdef"
#: Sent by every request; the server ignores it when run with --no-keys.
HEADERS = {"Content-Type": "application/json", "Ocp-Apim-Subscription-Key": CLIENT_KEY}


def rank_body(event_id: str | None = None) -> bytes:
    body: dict[str, Any] = {"contextFeatures": CONTEXT, "actions": ACTIONS}
    if event_id:
        body["eventId"] = event_id
    return json.dumps(body).encode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bench_app() -> Any:
    """The real app plus a bare endpoint that reads the body and answers, for the baseline."""
    from flask import request

    from personalize.api import auth
    from personalize.app import create_app

    app = create_app()

    @app.post("/bench/bare")
    def bare():  # type: ignore[no-untyped-def]
        request.get_data()
        return {"ok": True}, 201

    if "personalize.auth" in app.extensions:  # the baseline checks no key: the ratios include the check's cost
        app.extensions["personalize.auth"].roles["bare"] = auth.OPEN
    return app


def serve(port: int, data_dir: str, workers: int, threads: int, keys: bool) -> None:
    """Like ``personalize serve``: with several workers the learner is its own process."""
    os.environ.update({"PERSONALIZE_DATA_DIR": data_dir, "PERSONALIZE_REWARD_WAIT_TIME": "600"})
    if keys:
        os.environ.update({"PERSONALIZE_API_KEYS": f"{CLIENT_KEY},rotated-{CLIENT_KEY}", "PERSONALIZE_ADMIN_KEYS": ADMIN_KEY})
    from personalize.cli_options import open_database
    from personalize.config import load_settings
    from personalize.ops import logs, metrics
    from personalize.server import run_server

    settings = load_settings()
    open_database(settings).dispose()  # migrate once, before the workers fork
    metrics.prepare_dir(settings, clean=True)  # as serve does: every worker's metrics in memory-mapped files
    log = open(Path(data_dir) / "server.log", "ab")  # the access log, one line per request, as serve writes it
    os.dup2(log.fileno(), 2)
    logs.configure(settings)
    learner = None
    if workers > 1:
        os.environ["PERSONALIZE_LEARNER"] = "off"
        learner = subprocess.Popen([sys.executable, "-m", "personalize", "learn"], stdout=subprocess.DEVNULL)
    try:
        run_server("127.0.0.1", port, workers=workers, threads=threads, app_factory=bench_app)
    finally:
        if learner is not None:
            learner.terminate()
            learner.wait(15)


def _client(port: int, kind: str, seconds: float, rate: float, event_ids: list[str], out: Any) -> None:
    """One load process: closed loop (rate 0) or open loop at ``rate`` requests/s."""
    conn = http.client.HTTPConnection("127.0.0.1", port)
    headers = HEADERS
    latencies: list[float] = []
    reward = json.dumps({"value": 1.0}).encode()
    body = rank_body()  # built once: the clients share the server's two cores
    start = time.perf_counter()
    sent = 0
    while True:
        now = time.perf_counter()
        if now - start >= seconds:
            break
        if rate > 0:
            scheduled = start + sent / rate
            if scheduled > now:
                time.sleep(scheduled - now)
            t0 = scheduled  # latency from the scheduled time: no coordinated omission
        else:
            t0 = time.perf_counter()
        if kind == "rank":
            conn.request("POST", "/personalizer/v1.0/rank", body=body, headers=headers)
        elif kind == "bare":
            conn.request("POST", "/bench/bare", body=body, headers=headers)
        elif kind == "bare-small":
            conn.request("POST", "/bench/bare", body=reward, headers=headers)
        else:
            if sent >= len(event_ids):
                break
            conn.request("POST", f"/personalizer/v1.0/events/{event_ids[sent]}/reward", body=reward, headers=headers)
        response = conn.getresponse()
        response.read()
        assert response.status in (201, 204), response.status
        latencies.append(time.perf_counter() - t0)
        sent += 1
    out.put((sent, time.perf_counter() - start, latencies))


def load(port: int, kind: str, seconds: float, clients: int, rate: float = 0.0, event_ids: list[str] | None = None) -> tuple[float, list[float]]:
    """Requests per second and all latencies, from ``clients`` processes."""
    queue: Any = mp.Queue()
    chunks = [(event_ids or [])[i::clients] for i in range(clients)]
    procs = [mp.Process(target=_client, args=(port, kind, seconds, rate / clients, chunks[i], queue)) for i in range(clients)]
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    total = sum(r[0] for r in results)
    elapsed = max(r[1] for r in results)
    return total / elapsed, [x for r in results for x in r[2]]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def post(port: int, path: str, body: bytes) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    conn.request("POST", path, body=body, headers=HEADERS)
    response = conn.getresponse()
    return response.status, response.read()


def status(port: int) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    conn.request("GET", "/personalizer/v1.0/status", headers=HEADERS)
    return json.loads(conn.getresponse().read())


def learner_throughput(n: int) -> float:
    """Events/s of Learner.step on n already-rewarded 50-action events (no HTTP involved)."""
    from personalize.app import create_app
    from personalize.config import load_settings

    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(load_settings({"data_dir": tmp, "learner_batch": n}, env={}), start=False)
        service = app.extensions["personalize"]
        body = json.loads(rank_body())
        for i in range(n):
            out = service.rank({**body, "eventId": f"e{i}"})
            service.reward(out["eventId"], {"value": float(i % 3 == 0)})
        t0 = time.perf_counter()
        learned = service.learner.step()
        elapsed = time.perf_counter() - t0
        service.close()
    assert learned == n, learned
    return n / elapsed


def wait_until_learned(port: int, timeout: float = 120.0) -> float:
    """Seconds until the learner has taken every rewarded event (and the ranker serves that model)."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        s = status(port)
        if s["events"]["readyToLearn"] == 0 and s["model"]["servingVersion"] == s["model"]["version"]:
            return time.perf_counter() - t0
        time.sleep(0.05)
    raise RuntimeError(f"the learner did not catch up within {timeout:.0f} s: {s}")


def reward_to_model_delay(port: int, trials: int) -> list[float]:
    delays = []
    for _ in range(trials):
        event_id = uuid.uuid4().hex
        post(port, "/personalizer/v1.0/rank", rank_body(event_id))
        time.sleep(0.2)  # let earlier work settle so each trial measures one reward
        before = status(port)["events"]["learned"]
        t0 = time.perf_counter()
        code, _ = post(port, f"/personalizer/v1.0/events/{event_id}/reward", json.dumps({"value": 1.0}).encode())
        assert code == 204
        while True:
            s = status(port)
            if s["events"]["learned"] > before and s["model"]["servingVersion"] == s["model"]["version"]:
                break
            time.sleep(0.002)
        delays.append(time.perf_counter() - t0)
    return delays


def _row(name: str, detail: str, values: list[float], target: str, ok: Any) -> tuple[str, str, float, str, str, bool]:
    median = statistics.median(values)
    spread = f"{min(values):.3f}-{max(values):.3f}" if len(values) > 1 else ""
    return name, detail, median, spread, target, bool(ok(median))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=6.0, help="duration of each load phase")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of every phase; rows show the median")
    parser.add_argument("--clients", type=int, default=4, help="client processes for the closed-loop phases")
    parser.add_argument("--learner-events", type=int, default=4000)
    parser.add_argument("--workers", type=int, default=1, help="gunicorn workers (>1: the learner runs as its own "
                        "process, as with `personalize serve --workers N`)")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker")
    parser.add_argument("--no-keys", dest="keys", action="store_false", help="serve without API keys (default: a "
                        "client and an admin key configured, the client key sent with every call)")
    args = parser.parse_args()

    data_dir = tempfile.mkdtemp(prefix="personalize-bench-")
    port = free_port()
    server = mp.Process(target=serve, args=(port, data_dir, args.workers, args.threads, args.keys), daemon=True)
    server.start()
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            if post(port, "/bench/bare", b"{}")[0] == 201:
                break
        except OSError:
            time.sleep(0.1)
    print(f"server: gunicorn+uvicorn {args.workers} worker(s) x {args.threads} threads, SQLite in {data_dir}, "
          f"API keys {'on' if args.keys else 'off'}; "
          f"{args.clients} client processes; {args.seconds:.0f}s per phase, {args.repeats} rounds")

    load(port, "rank", 1.0, args.clients)  # warm-up
    rank_ratio, reward_ratio, p99, p50, catch_up = [], [], [], [], []
    rank_lat: list[float] = []
    for round_ in range(args.repeats):
        bare_rps, _ = load(port, "bare", args.seconds, args.clients)
        rank_rps, latencies = load(port, "rank", args.seconds, args.clients)
        rank_lat += latencies
        bare_small_rps, _ = load(port, "bare-small", args.seconds, args.clients)
        event_ids = [json.loads(post(port, "/personalizer/v1.0/rank", rank_body())[1])["eventId"]
                     for _ in range(int(bare_small_rps * args.seconds * 1.2))]
        reward_rps, _ = load(port, "reward", args.seconds, args.clients, event_ids=event_ids)
        catch_up.append(wait_until_learned(port))  # the latency phase measures ranks, not the reward phase's backlog
        _, half_lat = load(port, "rank", args.seconds, 2, rate=rank_rps / 2)
        rank_ratio.append(rank_rps / bare_rps)
        reward_ratio.append(reward_rps / bare_small_rps)
        p99.append(1000 * percentile(half_lat, 0.99))
        p50.append(1000 * percentile(half_lat, 0.5))
        print(f"round {round_ + 1}: rank {rank_rps:.0f} / bare {bare_rps:.0f} req/s, reward {reward_rps:.0f} / bare "
              f"{bare_small_rps:.0f} req/s, half-load p50 {p50[-1]:.1f} ms p99 {p99[-1]:.1f} ms", flush=True)
    delays = reward_to_model_delay(port, 20)
    server.terminate()
    server.join(10)
    learn_eps = [learner_throughput(args.learner_events) for _ in range(args.repeats)]

    learner_mode = "thread on" if args.workers == 1 else "process on"
    rows = [
        _row("rank throughput / bare (same body)", "50 actions x 10 features", rank_ratio, ">= 0.5", lambda v: v >= 0.5),
        _row("reward throughput / bare (small body)", f"earliest; learner {learner_mode}", reward_ratio, ">= 0.7", lambda v: v >= 0.7),
        _row("rank p99 at half max load (ms)", f"p50 {statistics.median(p50):.1f} ms", p99, "<= 10", lambda v: v <= 10),
        _row("learner throughput (events/s)", f"{args.learner_events} events, 50 actions", learn_eps, ">= 5000", lambda v: v >= 5000),
        _row("reward-to-model delay max (s)", f"p50 {statistics.median(delays):.3f} s, 20 trials", [max(delays)], "<= 1", lambda v: v <= 1),
    ]
    print(f"{'measure':40s} {'detail':30s} {'median':>10s} {'range':>19s}  target   ok")
    for name, detail, value, spread, target, ok in rows:
        print(f"{name:40s} {detail:30s} {value:10.3f} {spread:>19s}  {target:7s}  {'yes' if ok else 'NO'}")
    print(f"(closed-loop rank latency p50 {1000 * percentile(rank_lat, 0.5):.1f} ms, p99 {1000 * percentile(rank_lat, 0.99):.1f} ms; "
          f"the learner caught up {max(catch_up):.1f} s or less after each reward phase)")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
