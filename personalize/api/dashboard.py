"""GET /dashboard (an HTML page) and GET /dashboard/data (its numbers as JSON): admin only.

The numbers come from personalize/ops/dashboard.py, computed when asked for and cached briefly per
process; the charts are inline SVG drawn here (personalize/ops/charts.py): the page loads nothing else.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, render_template

from personalize.ops import dashboard
from personalize import store
from personalize.ops.charts import Series, line_chart
from personalize.ops.metrics import error_counts

bp = Blueprint("dashboard", __name__)

ONLINE, BASELINE, EXPLORE = "#1f77b4", "#d62728", "#2ca02c"


def _compute(app: Flask) -> dict[str, Any]:
    service = app.extensions["personalize"]
    errors = {"counts": error_counts(service.metrics)[: dashboard.TOP],
              "recent": app.extensions["personalize.errors"].recent()[: dashboard.TOP]}
    with service.db.reading() as connection:
        data = dashboard.collect(connection, service.clock(), service.ranker.version, errors)
        data["learningMode"] = service.live.current.learning_mode
        # Apprentice: how the model compares with the baseline (docs/api.md, "Learning modes"); None without events
        data["apprentice"] = store.apprentice_metrics(connection, service.settings.reward_min, service.settings.reward_max)
        return data


def _data() -> dict[str, Any]:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    cache = app.extensions.get("personalize.dashboard")
    if cache is None:
        cache = app.extensions["personalize.dashboard"] = dashboard.DashboardCache(lambda: _compute(app))
    return cache.get()


def _utc(t: float | None) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC") if t is not None else "never"


def _charts(data: dict[str, Any]) -> dict[str, Any]:
    series = data["reward"]["series"]
    reward = line_chart([
        Series("online policy", ONLINE, [(p["time"], p["online"]["value"], p["online"]["low"], p["online"]["high"])
                                         for p in series]),
        Series("baseline: first action (IPS)", BASELINE,
               [(p["time"], p["baseline"]["value"], p["baseline"]["low"], p["baseline"]["high"]) for p in series]),
    ], "Average reward (95% intervals)", "reward")
    shares = [(p["time"], p["share"], None, None) for p in data["exploration"]["series"]]
    exploration = line_chart([Series("explored", EXPLORE, shares)], "Share of Rank calls that explored", "share",
                             percent=True, y_range=(0.0, max([s[1] for s in shares], default=0.0) or 0.1))
    return {"reward": reward, "exploration": exploration}


@bp.get("/dashboard/data")
def data():  # type: ignore[no-untyped-def]
    return jsonify(_data())


@bp.get("/dashboard")
def page():  # type: ignore[no-untyped-def]
    data = _data()
    html = render_template("dashboard.html", d=data, charts=_charts(data), online=ONLINE, baseline=BASELINE,
                           utc=_utc, ago=dashboard.ago, window_hours=dashboard.WINDOW_SECONDS / 3600)
    return Response(html, content_type="text/html; charset=utf-8")
