"""Log lines for people and for log shippers, and the access log: one line per HTTP request.

``log_format = "text"`` keeps the familiar ``time LEVEL logger: message`` lines; ``"json"`` writes
one JSON object per line (``time``, ``level``, ``logger``, ``message`` and, for access lines,
``method``, ``path``, ``route``, ``status``, ``durationMs``, ``requestId``, ``remoteAddr``), which
Loki, Fluent Bit, Vector or the ELK stack take without parsing rules.

Every request carries an id: the client's ``x-ms-client-request-id`` (what Microsoft's SDKs send) or
``apim-request-id``, else a new UUID. The answer returns it in ``apim-request-id`` (as Personalizer
does) and echoes ``x-ms-client-request-id``; the access line and the dashboard's recent errors show
it, so a client's report can be found in the log.
"""

from __future__ import annotations

import logging
import random
import re
import sys
import time
import uuid
from collections import deque
from datetime import datetime, timezone
from typing import Any

import orjson
from flask import Flask, Response, request

from personalize.config import Settings
from personalize.ops.metrics import Metrics

__all__ = ["JsonFormatter", "TEXT_FORMAT", "configure", "formatter", "install", "ErrorRing", "ACCESS_LOGGER"]

ACCESS_LOGGER = "personalize.access"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: A client's request id is echoed only if it looks like one (a UUID, or a short token).
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
#: Errors each process remembers for the dashboard.
ERRORS_KEPT = 50

access_log = logging.getLogger(ACCESS_LOGGER)


class JsonFormatter(logging.Formatter):
    """One JSON object per record; an access record's fields (``record.fields``) are merged in."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def configure(settings: Settings, level: str | None = None) -> None:
    """Format every log line of this process (and the processes it forks) as ``log_format`` says, on
    stderr; the access log is on at INFO whatever the level of the others."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler(sys.stderr))
    for handler in root.handlers:
        handler.setFormatter(formatter(settings.log_format))
    if level is not None:
        root.setLevel(level)
    access_log.setLevel(logging.INFO if settings.access_log else logging.WARNING)


class ErrorRing:
    """The last ``ERRORS_KEPT`` error answers of this process, newest first (for the dashboard)."""

    def __init__(self, size: int = ERRORS_KEPT) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=size)

    def add(self, entry: dict[str, Any]) -> None:
        self._entries.appendleft(entry)  # deque appends are atomic: no lock

    def recent(self) -> list[dict[str, Any]]:
        return list(self._entries)


def _new_id() -> str:
    """A random (version 4) UUID for a request that brought no id. From ``random``, not ``os.urandom``: an id
    names a request in the logs, it guards nothing, and a system call per request costs more."""
    return str(uuid.UUID(int=random.getrandbits(128), version=4))


def _printable(text: str, limit: int = 200) -> str:
    """A path as it may appear in a text log line: no control characters (a %0A must not start a new line)."""
    text = text if len(text) <= limit else text[:limit] + "..."
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def _error_of(response: Response) -> tuple[str, str]:
    """(code, message) of an error answer's JSON body."""
    try:
        error = orjson.loads(response.get_data())["error"]
        return str(error.get("code", "")), str(error.get("message", ""))[:300]
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, RuntimeError):
        return "", ""


def install(app: Flask, settings: Settings, metrics: Metrics) -> None:
    """Time, count and log every request; give each an id. Install before the key check: a refused
    request is timed and logged too."""
    errors = app.extensions["personalize.errors"] = ErrorRing()
    log_requests = settings.access_log

    def start() -> None:
        environ = request._get_current_object().environ
        environ["personalize.start"] = time.perf_counter()
        client_id = environ.get("HTTP_X_MS_CLIENT_REQUEST_ID")
        given = (client_id or environ.get("HTTP_APIM_REQUEST_ID") or "").strip(" \t")  # as HTTP trims a value
        environ["personalize.request_id"] = given if _REQUEST_ID.fullmatch(given) else _new_id()

    def finish(response: Response) -> Response:
        current = request._get_current_object()
        environ = current.environ
        seconds = time.perf_counter() - environ.get("personalize.start", time.perf_counter())
        request_id = environ.get("personalize.request_id") or _new_id()
        response.headers["apim-request-id"] = request_id
        client_id = environ.get("HTTP_X_MS_CLIENT_REQUEST_ID")
        if client_id is not None and client_id.strip(" \t") == request_id:
            response.headers["x-ms-client-request-id"] = request_id
        rule = current.url_rule
        route = rule.rule if rule is not None else "unmatched"
        method = environ["REQUEST_METHOD"]
        status = response.status_code
        metrics.request(route, method, status, seconds)
        if status >= 400:
            code, message = _error_of(response)
            metrics.error(route, status, code or str(status))
            errors.add({"time": time.time(), "method": method, "path": _printable(current.path), "route": route,
                        "status": status, "code": code, "message": message, "requestId": request_id})
        if log_requests and access_log.isEnabledFor(logging.INFO):
            path = _printable(current.path)
            fields = {"method": method, "path": path, "route": route, "status": status,
                      "durationMs": round(seconds * 1000, 3), "requestId": request_id,
                      "remoteAddr": environ.get("REMOTE_ADDR", "")}
            # makeRecord + handle: Logger.info would also walk the stack for the caller's file and line
            access_log.handle(access_log.makeRecord(
                ACCESS_LOGGER, logging.INFO, __file__, 0, "%s %s %d %.1fms route=%s id=%s",
                (method, path, status, seconds * 1000, route, request_id), None, extra={"fields": fields}))
        return response

    app.before_request(start)
    app.after_request(finish)
