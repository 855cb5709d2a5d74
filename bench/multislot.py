"""Multi-slot Rank throughput against single-slot Rank, in the same run: `python bench/multislot.py`.

The real app under the production server (bench/service.py's set-up: gunicorn + uvicorn, 1 worker x 4
threads, SQLite in a temp folder, API keys on), loaded from client processes over loopback. Each round
measures, back to back:

  single-slot Rank   20 actions x 10 features, the context of bench/service.py
  multi-slot Rank    the same 20 actions and context, 3 slots (a hero and two side slots, with features)
  single-slot Reward / multi-slot Reward (all 3 slots in one call)

and prints multi/single per round and their median and range (the machine is noisy: only ratios measured
in the same run mean anything). Also the learner's throughput on each kind of event, in process.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service import CONTEXT, HEADERS, free_port, post, serve  # noqa: E402  (bench/service.py)

ACTIONS = [{"id": f"item-{i}", "features": [{"item": {f"f{j}": round(0.1 * j + i, 3) for j in range(9)} | {"kind": f"k{i % 7}"}}]}
           for i in range(20)]
SLOTS = [{"id": "hero", "features": [{"slot": {"size": "large", "position": "top"}}], "baselineAction": "item-0"},
         {"id": "left", "features": [{"slot": {"size": "small", "position": "side"}}], "baselineAction": "item-1"},
         {"id": "right", "features": [{"slot": {"size": "small", "position": "side"}}], "baselineAction": "item-2",
          "excludedActions": ["item-0"]}]
SINGLE = json.dumps({"contextFeatures": CONTEXT, "actions": ACTIONS}).encode()
MULTI = json.dumps({"contextFeatures": CONTEXT, "actions": ACTIONS, "slots": SLOTS}).encode()
REWARD = json.dumps({"value": 1.0}).encode()
SLOT_REWARD = json.dumps({"reward": [{"slotId": s["id"], "value": 1.0} for s in SLOTS]}).encode()


def _client(port: int, kind: str, seconds: float, event_ids: list[str], out: Any) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    start, sent = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        if kind == "single":
            conn.request("POST", "/personalizer/v1.0/rank", body=SINGLE, headers=HEADERS)
        elif kind == "multi":
            conn.request("POST", "/personalizer/v1.0/multislot/rank", body=MULTI, headers=HEADERS)
        else:
            if sent >= len(event_ids):
                break
            path = ("/personalizer/v1.0/events/{}/reward" if kind == "reward" else
                    "/personalizer/v1.0/multislot/events/{}/reward").format(event_ids[sent])
            conn.request("POST", path, body=REWARD if kind == "reward" else SLOT_REWARD, headers=HEADERS)
        response = conn.getresponse()
        response.read()
        assert response.status in (201, 204), (kind, response.status)
        sent += 1
    out.put((sent, time.perf_counter() - start))


def load(port: int, kind: str, seconds: float, clients: int, event_ids: list[str] | None = None) -> float:
    queue: Any = mp.Queue()
    chunks = [(event_ids or [])[i::clients] for i in range(clients)]
    procs = [mp.Process(target=_client, args=(port, kind, seconds, chunks[i], queue)) for i in range(clients)]
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    return sum(r[0] for r in results) / max(r[1] for r in results)


def learner_throughput(n: int, multislot: bool) -> float:
    """Events per second one learner step learns (and publishes), for n events of one kind."""
    from personalize.app import create_app
    from personalize.config import load_settings

    data_dir = tempfile.mkdtemp(prefix="personalize-bench-learn-")
    settings = load_settings({"data_dir": data_dir, "reward_wait_time": 0.0, "learner_batch": n}, env={})
    app = create_app(settings, start=False)
    client, service = app.test_client(), app.extensions["personalize"]
    body = json.loads(MULTI if multislot else SINGLE)
    path = "/personalizer/v1.0/multislot/rank" if multislot else "/personalizer/v1.0/rank"
    for _ in range(n):
        assert client.post(path, json=body).status_code == 201
    start = time.perf_counter()
    learned = service.learner.step()
    elapsed = time.perf_counter() - start
    service.close()
    assert learned == n, learned
    return n / elapsed


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} [{min(values):.3f}, {max(values):.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each load phase")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--learner-events", type=int, default=1000)
    args = parser.parse_args()

    data_dir = tempfile.mkdtemp(prefix="personalize-bench-")
    port = free_port()
    server = mp.Process(target=serve, args=(port, data_dir, 1, 4, True), daemon=True)
    server.start()
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            if post(port, "/bench/bare", b"{}")[0] == 201:
                break
        except OSError:
            time.sleep(0.1)
    print(f"server: gunicorn+uvicorn 1 worker x 4 threads, SQLite in {data_dir}, API keys on; {args.clients} client "
          f"processes; {args.seconds:.0f}s per phase, {args.repeats} rounds; 20 actions, 3 slots")
    load(port, "single", 1.0, args.clients)  # warm-up
    load(port, "multi", 1.0, args.clients)
    rank_ratio, reward_ratio = [], []
    for round_ in range(args.repeats):
        single = load(port, "single", args.seconds, args.clients)
        multi = load(port, "multi", args.seconds, args.clients)
        n = int(single * args.seconds * 1.5)
        singles = [json.loads(post(port, "/personalizer/v1.0/rank", SINGLE)[1])["eventId"] for _ in range(n)]
        multis = [json.loads(post(port, "/personalizer/v1.0/multislot/rank", MULTI)[1])["eventId"] for _ in range(n)]
        reward = load(port, "reward", args.seconds, args.clients, singles)
        slot_reward = load(port, "slot-reward", args.seconds, args.clients, multis)
        rank_ratio.append(multi / single)
        reward_ratio.append(slot_reward / reward)
        print(f"round {round_ + 1}: rank single {single:.0f} multi {multi:.0f} req/s; reward single {reward:.0f} "
              f"multi (3 slots) {slot_reward:.0f} req/s", flush=True)
    server.terminate()
    server.join(10)
    learn = [(learner_throughput(args.learner_events, True), learner_throughput(args.learner_events, False))
             for _ in range(args.repeats)]
    print(f"{'measure':52s} {'median [range]':>24s}")
    print(f"{'multi-slot Rank / single-slot Rank (req/s)':52s} {spread(rank_ratio):>24s}")
    print(f"{'multi-slot Reward (3 slots) / single-slot Reward':52s} {spread(reward_ratio):>24s}")
    print(f"{'learner: multi-slot / single-slot events per second':52s} {spread([m / s for m, s in learn]):>24s}"
          f"   (multi {statistics.median(m for m, _ in learn):.0f}, single {statistics.median(s for _, s in learn):.0f} events/s)")


if __name__ == "__main__":
    main()
