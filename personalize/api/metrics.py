"""GET /metrics: Prometheus metrics of every server worker and learner on this host (see personalize/ops/metrics.py)."""

from flask import Blueprint, Response

from personalize.api._common import service
from personalize.ops.metrics import CONTENT_TYPE, render

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics():  # type: ignore[no-untyped-def]
    s = service()
    return Response(render(s.metrics, s.store_gauges), content_type=CONTENT_TYPE)
