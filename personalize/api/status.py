"""GET /personalizer/v1.0/status (our extension) and a bare health check."""

from flask import Blueprint, jsonify

from personalize.api._common import service
from personalize.api.auth import is_admin_request
from personalize.api.errors import service_unavailable

bp = Blueprint("status", __name__, url_prefix="/personalizer/v1.0")


@bp.get("/status")
def status():  # type: ignore[no-untyped-def]
    body = service().status()
    if not is_admin_request():  # the learner's owner names a host and a process id: for admins only
        body["learner"].pop("owner", None)
    return jsonify(body)


@bp.get("/health")
def health():  # type: ignore[no-untyped-def]
    """Readiness for load balancers: 503 while the database is unreachable (checked at most once a
    second, see db_health.PROBE_INTERVAL); also the 'bare endpoint' the benchmarks compare against."""
    if not service().db.health.probe():
        return service_unavailable()
    return jsonify({"status": "ok"})
