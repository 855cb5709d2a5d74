"""Heavy Rank benchmark: `python bench/heavy_requests.py [--repeats 7]`.

How long can one admitted Rank hold the process? Builds the heaviest Rank requests the limits
admit (settings max_features, max_crossed_features, max_actions at their defaults, or as set by
PERSONALIZE_* variables), in several shapes, and times in this thread's CPU time (median and max of
``--repeats`` runs):

  parse + predict  JSON body -> validated namespaces -> limits -> DSJSON -> VW predict (the Rank path,
                   without the database insert)                                      target <= ~20 ms
  learn            VW learning the logged line (what the learner does per event)     target <= ~20 ms

each also as a ratio to the benchmark's typical Rank (bench/service.py: 50 actions x 10 features)
measured in the same run. The minimum is shown too: on a shared machine CPU time inflates several
fold under contention (the same VW call measured 5 to 20 ms), and the minimum is the request's own cost. Then it sends requests just over each limit and shows that they are
refused, and how long the refusal takes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from personalize.api.errors import ApiError  # noqa: E402
from personalize.config import load_settings  # noqa: E402
from personalize.dsjson import event_line  # noqa: E402
from personalize.features import build_context  # noqa: E402
from personalize.limits import RankLimits  # noqa: E402
from personalize.ranker import Ranker  # noqa: E402
from personalize.api.schemas import RequestSchemas  # noqa: E402
from personalize.service import parse_rank_request  # noqa: E402
from personalize.vw import Model  # noqa: E402

TARGET_MS = 20.0
#: Every entry the limits count: a feature list's objects, each object's names, each namespace's features.
OVERHEAD_PER_LIST = 2  # [ {namespace: {...}} ]: the list element and the namespace's name


@dataclass
class LoggedEvent:
    """The Event columns event_line() reads."""

    example: str
    ranking: list[int]
    probabilities: list[float]
    chosen_index: int = 0
    probability: float = 1.0
    created_at: float = 1_700_000_000.0
    event_id: str = "heavy"
    model_version: int = 0


def features(prefix: str, n: int, width: int) -> dict[str, str]:
    """``n`` distinct categorical features whose values are ``width`` characters long (hashed by VW)."""
    return {f"{prefix}{i}": f"{i:0{width}d}" for i in range(n)}


def body(context: int, actions: int, per_action: int, width: int = 6) -> dict[str, Any]:
    """contextFeatures with ``context`` features in one namespace, ``actions`` actions with ``per_action`` each."""
    return {
        "contextFeatures": [{"user": features("u", context, width)}],
        "actions": [{"id": f"item-{k}", "features": [{"item": features("f", per_action, width)}] if per_action else []}
                    for k in range(actions)],
    }


def typical() -> dict[str, Any]:
    """bench/service.py's Rank body."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from service import rank_body  # type: ignore[import-not-found]

    return orjson.loads(rank_body())


def shapes(max_features: int, max_crossed: int, max_actions: int) -> dict[str, dict[str, Any]]:
    """The heaviest admitted shapes under default ``-q ca``: all features in the context (each action then
    crosses its id with all of them), crossed features at the limit with the rest in the context, and all
    features in the actions; plus the longest strings the body limit allows."""
    k = max_actions
    out: dict[str, dict[str, Any]] = {}
    # context-only: each featureless action carries its id (action_id_feature=auto): crossed = C x K.
    c = min(max_features - OVERHEAD_PER_LIST, max_crossed // k)
    out[f"context {c}, {k} bare actions"] = body(c, k, 0)
    # crossed at the limit: pick the per-action count that leaves the most context within both limits.
    best = None
    for per_action in range(1, max_features // k):
        c = min(max_features - OVERHEAD_PER_LIST - k * (per_action + OVERHEAD_PER_LIST), max_crossed // (k * per_action))
        if c < 1:
            break
        cost = c * k + c * k * per_action  # duplicated context + crossed features, what VW does per action
        if best is None or cost > best[0]:
            best = (cost, c, per_action)
    assert best is not None
    _, c, per_action = best
    out[f"context {c} x {k} actions x {per_action}"] = body(c, k, per_action)
    # action-heavy: everything in the actions, one context feature.
    per_action = (max_features - OVERHEAD_PER_LIST - 1 - k * OVERHEAD_PER_LIST) // k
    out[f"context 1, {k} actions x {per_action}"] = body(1, k, per_action)
    # long strings: the same crossed shape with ~150-character values (hashing cost), under 1 MB.
    _, c, per_action = best
    out[f"as above, 150-char values"] = body(c, k, per_action, width=150)
    return out


def over_crossed(max_features: int, max_crossed: int, k: int) -> dict[str, Any]:
    """A Rank within max_features whose crossed features are just over max_crossed_features."""
    for per_action in range(1, max_features):
        room = max_features - OVERHEAD_PER_LIST - k * (per_action + OVERHEAD_PER_LIST)
        context = -(-(max_crossed + 1) // (k * per_action))
        if 0 < context <= room:
            return body(context, k, per_action)
    raise ValueError("no Rank within max_features crosses more than max_crossed_features")


def cpu(fn: Callable[[], Any], repeats: int) -> list[float]:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.thread_time()
        fn()
        times.append((time.thread_time() - t0) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    settings = load_settings()
    limits = RankLimits.from_settings(settings)
    schemas = RequestSchemas(settings)  # the request validation is part of the parse
    ranker = Ranker(settings.vw_args, settings.exploration, settings.squarecb_actions)
    learner = Model(settings.vw_args)
    print(f"policy {settings.learning_policy!r}; max_features {settings.max_features}, max_crossed_features "
          f"{settings.max_crossed_features}, max_actions {settings.max_actions}; CPU ms of this thread, "
          f"{args.repeats} runs")

    def rank(raw: bytes) -> tuple[str, Any]:
        request = parse_rank_request(orjson.loads(raw), schemas, settings.max_features)
        limits.check_crossed(request.context, request.context_features, request.actions, request.action_features,
                             "contextFeatures")
        context = build_context(request.context, request.actions, settings.action_id_feature)
        ranker.decide(context, request.event_id)
        return context, request

    def crossed_features(raw: bytes) -> int:
        request = parse_rank_request(orjson.loads(raw), schemas, settings.max_features)
        return limits.crossed(request.context, request.actions)

    def measure(raw: bytes) -> tuple[int, list[float], list[float]]:
        context, _ = rank(raw)
        n = len(orjson.loads(raw)["actions"])
        line = event_line(LoggedEvent(context, list(range(n)), [1.0 / n] * n), 1.0)
        return crossed_features(raw), cpu(lambda: rank(raw), args.repeats), cpu(lambda: learner.learn(line), args.repeats)

    base_raw = orjson.dumps(typical())
    base_crossed, base_rank, base_learn = measure(base_raw)
    base_rank_ms, base_learn_ms = statistics.median(base_rank), statistics.median(base_learn)
    print(f"{'request':34s} {'KB':>4s} {'crossed':>8s} {'rank ms min/med/max':>20s} {'x typ':>5s} "
          f"{'learn ms min/med/max':>20s} {'x typ':>5s}  ok")
    print(f"{'typical (bench/service.py)':34s} {len(base_raw) / 1024:4.0f} {base_crossed:8d} {_ms(base_rank)} {1:5.0f} "
          f"{_ms(base_learn)} {1:5.0f}")
    worst = 0.0
    for name, request in shapes(settings.max_features, settings.max_crossed_features, settings.max_actions).items():
        raw = orjson.dumps(request)
        if len(raw) > settings.max_body_bytes:
            print(f"{name:34s} skipped: {len(raw)} bytes is over max_body_bytes")
            continue
        crossed, rank_ms, learn_ms = measure(raw)
        worst = max(worst, statistics.median(rank_ms), statistics.median(learn_ms))
        ok = max(statistics.median(rank_ms), statistics.median(learn_ms)) <= TARGET_MS
        print(f"{name:34s} {len(raw) / 1024:4.0f} {crossed:8d} {_ms(rank_ms)} {statistics.median(rank_ms) / base_rank_ms:5.0f} "
              f"{_ms(learn_ms)} {statistics.median(learn_ms) / base_learn_ms:5.0f}  {'yes' if ok else 'NO'}")
    print(f"worst admitted Rank (median): {worst:.1f} ms CPU, target <= {TARGET_MS:.0f} ms")

    k = settings.max_actions
    over = {
        "max_features + 1 entries": body(settings.max_features - OVERHEAD_PER_LIST + 1, 1, 0),
        "over max_crossed_features": over_crossed(settings.max_features, settings.max_crossed_features, k),
        "~900 KB of features": body(1, k, 900_000 // 17 // k),
    }
    for name, request in over.items():
        raw = orjson.dumps(request)
        try:
            rank(raw)
        except ApiError as error:
            refused = cpu(lambda: _refused(rank, raw), args.repeats)
            print(f"{name:42s} {len(raw) / 1024:5.0f} KB: {error.status} {error.code}, refused in "
                  f"{statistics.median(refused):.2f} ms (max {max(refused):.2f})")
        else:
            print(f"{name:42s} ADMITTED (a limit does not hold)")


def _ms(times: list[float]) -> str:
    return f"{min(times):6.2f}/{statistics.median(times):6.2f}/{max(times):6.2f}"


def _refused(rank: Callable[[bytes], Any], raw: bytes) -> None:
    try:
        rank(raw)
    except ApiError:
        return
    raise AssertionError("admitted")


if __name__ == "__main__":
    main()
