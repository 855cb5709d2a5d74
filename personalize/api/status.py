"""GET /personalizer/v1.0/status (our extension) and a bare health check."""

from flask import Blueprint, jsonify

from personalize.api._common import service

bp = Blueprint("status", __name__, url_prefix="/personalizer/v1.0")


@bp.get("/status")
def status():  # type: ignore[no-untyped-def]
    return jsonify(service().status())


@bp.get("/health")
def health():  # type: ignore[no-untyped-def]
    """Liveness probe; also the 'bare endpoint' the benchmarks compare against."""
    return jsonify({"status": "ok"})
