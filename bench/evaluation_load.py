"""Does a running offline evaluation slow Rank? `python bench/evaluation_load.py [--seconds 8]`.

Starts `personalize serve` (1 worker, learner thread, SQLite in a temp folder), logs ``--events``
rewarded events, then measures Rank throughput (closed loop, ``--clients`` client processes over
loopback, the tour's 3-action body) in three phases of ``--seconds``: before, while an evaluation
with policy optimization runs (in the learner process's job worker), and after it. Prints each
phase's requests/s and the ratio to the mean of the two baselines, and whether the evaluation was
still running at the end of its phase (else the phase measured less than a full evaluation).
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid

BODY = json.dumps({
    "contextFeatures": [{"user": {"tier": "gold", "device": "mobile"}}, {"time": {"hour": 8}}],
    "actions": [{"id": a, "features": [{"dish": {"cuisine": c, "price": p}}]}
                for a, c, p in (("pasta", "italian", 12), ("curry", "indian", 14), ("salad", "french", 9))],
}).encode()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _call(conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    return response.status, response.read()


def _ctl(port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    """A control call on a connection of its own (kept-alive ones close after 5 idle seconds)."""
    return _call(http.client.HTTPConnection("127.0.0.1", port, timeout=30), method, path, body)


def _client(port: int, seconds: float, out: "mp.Queue[int]") -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    deadline = time.monotonic() + seconds
    done = 0
    while time.monotonic() < deadline:
        status, _ = _call(conn, "POST", "/personalizer/v1.0/rank", BODY)
        assert status == 201, status
        done += 1
    out.put(done)


def _throughput(port: int, seconds: float, clients: int) -> float:
    queue: "mp.Queue[int]" = mp.Queue()
    procs = [mp.Process(target=_client, args=(port, seconds, queue)) for _ in range(clients)]
    for p in procs:
        p.start()
    total = sum(queue.get() for _ in procs)
    for p in procs:
        p.join()
    return total / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--events", type=int, default=4000)
    args = parser.parse_args()
    port = _free_port()
    data = tempfile.mkdtemp(prefix="jobs-bench-")
    env = {**os.environ, "PERSONALIZE_REWARD_WAIT_TIME": "30"}
    server = subprocess.Popen([sys.executable, "-m", "personalize", "serve", "--port", str(port), "--data-dir", data],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port)
        for _ in range(300):
            try:
                if _call(conn, "GET", "/personalizer/v1.0/health")[0] == 200:
                    break
            except OSError:
                conn = http.client.HTTPConnection("127.0.0.1", port)
            time.sleep(0.1)
        start = time.time()
        for i in range(args.events):
            status, body = _call(conn, "POST", "/personalizer/v1.0/rank", BODY)
            event = json.loads(body)
            value = 1.0 if event["rewardActionId"] == "pasta" else 0.0
            _call(conn, "POST", f"/personalizer/v1.0/events/{event['eventId']}/reward", json.dumps({"value": value}).encode())
        conn.close()
        time.sleep(2)
        before = _throughput(port, args.seconds, args.clients)
        evaluation = f"bench-{uuid.uuid4()}"
        created = json.dumps({"name": "bench", "startTime": start - 60, "endTime": time.time() + 60,
                              "enablePolicyOptimization": True}).encode()
        assert _ctl(port, "PUT", f"/personalizer/v1.0/evaluations/{evaluation}", created)[0] == 200
        while json.loads(_ctl(port, "GET", f"/personalizer/v1.0/evaluations/{evaluation}")[1])["status"] == "NotSubmitted":
            time.sleep(0.1)
        began = time.monotonic()
        during = _throughput(port, args.seconds, args.clients)
        state = json.loads(_ctl(port, "GET", f"/personalizer/v1.0/evaluations/{evaluation}")[1])
        still_running = state["status"] == "Running"
        while state["status"] in ("NotSubmitted", "Running"):
            time.sleep(0.5)
            state = json.loads(_ctl(port, "GET", f"/personalizer/v1.0/evaluations/{evaluation}")[1])
        took = time.monotonic() - began
        after = _throughput(port, args.seconds, args.clients)
        base = (before + after) / 2
        print(f"load average {os.getloadavg()[0]:.2f}; {args.events} logged events; evaluation {state['status']} in {took:.1f} s"
              f" (still running at the end of its phase: {still_running}, progress then {state.get('progress')})")
        print(f"rank/s before           {before:8.1f}")
        print(f"rank/s during evaluation {during:7.1f}   ratio to baseline {during / base:.2f}")
        print(f"rank/s after            {after:8.1f}")
    finally:
        os.killpg(server.pid, 15)
        server.wait(20)


if __name__ == "__main__":
    main()
