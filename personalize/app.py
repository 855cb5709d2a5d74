"""The Flask application factory."""

from __future__ import annotations

import time
from typing import Any, Callable

import orjson
from flask import Flask, Response
from flask.json.provider import JSONProvider
from werkzeug.datastructures import Headers

from personalize.api import (
    auth, browsers, catalog, configuration, dashboard, errors, evaluations, events, logs, metrics, model, multislot,
    openapi, policy, rank, status, users,
)
from personalize.api._common import require_utf8_path
from personalize.config import Settings, load_settings
from personalize.ops import logs as access_logs
from personalize.service import Service

__all__ = ["create_app", "OrjsonProvider", "ApiResponse"]


class OrjsonProvider(JSONProvider):
    """Flask's JSON through orjson: the Rank response is on the hot path."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return orjson.dumps(obj).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return orjson.loads(s)


class ApiResponse(Response):
    """Flask's response, except that a 204 has no body and so no Content-Type or Content-Length
    (Flask would label the empty body text/html; RFC 9110 forbids Content-Length on a 204)."""

    def get_wsgi_headers(self, environ: dict[str, Any]) -> Headers:
        headers = super().get_wsgi_headers(environ)
        if self.status_code == 204:
            headers.remove("Content-Type")
            headers.remove("Content-Length")
        return headers


def create_app(
    settings: Settings | None = None, clock: Callable[[], float] = time.time, start: bool = True
) -> Flask:
    """Build the app: one Service (database, ranker, learner) bound as ``app.extensions['personalize']``."""
    settings = settings or load_settings()
    app = Flask("personalize")
    app.response_class = ApiResponse
    # Event ids may contain "/", even first or twice in a row: they must reach the handler as
    # they are, never be merged and redirected to another event's URL.
    app.url_map.merge_slashes = False
    app.url_map.converters["event_id"] = events.EventIdConverter
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json = OrjsonProvider(app)
    service = Service(settings, clock=clock)
    app.extensions["personalize"] = service
    errors.register_error_handlers(app)
    for blueprint in (rank.bp, events.bp, status.bp, catalog.bp, users.bp, configuration.bp, model.bp, logs.bp,
                      multislot.bp, policy.bp, evaluations.bp):
        app.register_blueprint(blueprint)
        app.register_blueprint(blueprint, url_prefix="/personalizer", name=f"{blueprint.name}_preview")
    app.register_blueprint(openapi.bp)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(dashboard.bp)
    access_logs.install(app, settings, service.metrics)  # before the key check: refused requests are timed and logged too
    auth.install(app, settings)  # first: an unauthenticated request learns nothing else
    app.before_request(require_utf8_path)
    browsers.install(app, settings)
    if start:
        service.start()
    return app
