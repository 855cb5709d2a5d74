"""The production server: gunicorn processes running uvicorn's event loop in front of the Flask app.

Why this model (docs/deploy.md has the measurements): with a thread-per-connection worker
(gunicorn's gthread) a client that sends its request a byte a second holds a thread, and four of
them stopped the service. Here each worker's event loop reads every request's headers and whole
body (at most ``max_body_bytes``) before the request is handed to a thread of the WSGI pool, so a
slow client costs a socket and a little memory, never a thread. Deadlines close connections that
trickle forever: ``HEADER_SECONDS`` for a request's headers, ``BODY_SECONDS`` for its body, the
keep-alive timeout between requests.
"""

from __future__ import annotations

import asyncio
import io
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable
from urllib.parse import unquote_to_bytes

import orjson
from gunicorn import glogging
from gunicorn.app.base import BaseApplication
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn_worker import UvicornWorker

from personalize.ops import logs, metrics

__all__ = ["run_server", "WsgiBridge", "HEADER_SECONDS", "BODY_SECONDS", "KEEPALIVE_SECONDS", "MAX_HEADER_BYTES"]

#: From a connection's opening (or a request's first byte) to the end of its headers.
HEADER_SECONDS = 10.0
#: From the end of a request's headers to the end of its body.
BODY_SECONDS = 30.0
#: Idle time allowed between two requests on a kept-alive connection.
KEEPALIVE_SECONDS = 5
#: Most bytes of one request's line and headers (gunicorn's own parser allowed 8 KiB per line).
MAX_HEADER_BYTES = 65_536
#: Seconds a thread may hold the GIL before a waiting one gets it (Python's default is 0.005). The
#: event loop parses and answers requests between the pool threads' CPU-bound Rank calls; at the
#: default each hand-over could wait 5 ms, which tripled the p99 latency of Rank at half load
#: (bench/service.py, same machine and run settings: 22 ms, against 5.4 ms at 0.001).
GIL_SWITCH_INTERVAL = 0.001


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus a deadline and a size bound for the headers: uvicorn has
    neither, so a connection could trickle its headers forever, or send a 70 MB header line that
    the parser kept in memory."""

    _header_timer: asyncio.TimerHandle | None = None
    _header_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_header_deadline()

    def on_headers_complete(self) -> None:
        self._cancel_header_deadline()
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        pending = self._header_timer is not None
        super().data_received(data)
        if pending and self._header_timer is not None:  # the headers are still incomplete
            self._header_bytes += len(data)
            if self._header_bytes > MAX_HEADER_BYTES:
                self._cancel_header_deadline()
                self.send_400_response(f"Request headers larger than {MAX_HEADER_BYTES} bytes.")  # and closes

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        self._cancel_header_deadline()
        self._header_bytes = 0
        self._header_timer = self.loop.call_later(HEADER_SECONDS, self._header_deadline_passed)

    def _cancel_header_deadline(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_deadline_passed(self) -> None:
        self._header_timer = None
        self.transport.close()


class WsgiBridge:
    """ASGI to WSGI for a WSGI app behind an event loop: the loop reads the whole request, one pool
    thread runs the app and returns the whole response, and the loop sends it.

    One hand-over each way and no thread ever waits on a socket. (a2wsgi, which streams both ways,
    blocks the pool thread on the loop four times per request; behind CPU-bound requests each wait
    costs a GIL switch, and Rank throughput fell to about 0.6x of gthread's: docs/deploy.md.) The app's
    responses are small JSON documents, so holding one whole in memory is fine.

    The app sees a ``Content-Length`` request whatever the client sent (chunked included), so
    Werkzeug's ``MAX_CONTENT_LENGTH`` and the app's own 413 apply as before: a body over
    ``max_body_bytes`` is read no further than one byte past the limit and reaches the app empty,
    declaring its length. A body that takes longer than ``BODY_SECONDS`` is a 408. Either way the
    connection is closed after the answer, leaving the rest of the body unread.
    """

    def __init__(self, app: Any, threads: int, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix="wsgi")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        declared = next((value for name, value in scope["headers"] if name == b"content-length"), None)
        chunks: list[bytes] = []
        size = 0
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            size = int(declared)
        else:
            try:
                async with asyncio.timeout(BODY_SECONDS):
                    while True:
                        message = await receive()
                        if message["type"] == "http.disconnect":
                            return
                        chunks.append(message.get("body", b""))
                        size += len(chunks[-1])
                        if size > self.max_body_bytes or not message.get("more_body", False):
                            break
            except TimeoutError:
                return await _send_error(send, 408, "RequestTimeout", f"The request body did not arrive within "
                                         f"{BODY_SECONDS:.0f} s; send it at once.")
        too_large = size > self.max_body_bytes
        environ = _environ(scope, b"" if too_large else b"".join(chunks), size)
        status, headers, body = await asyncio.get_running_loop().run_in_executor(self.executor, self._call, environ)
        if too_large:  # the unread rest of the body: close, don't parse it
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _call(self, environ: dict[str, Any]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """In a pool thread: the app's whole response."""
        started: list[Any] = []
        written: list[bytes] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            started[:] = [status, headers]
            return written.append

        result = self.app(environ, start_response)
        try:
            written.extend(result)
        finally:
            getattr(result, "close", lambda: None)()
        status, headers = started
        return int(status[:3]), [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers], b"".join(written)


def _environ(scope: dict[str, Any], body: bytes, length: int) -> dict[str, Any]:
    """PEP 3333's environ, as gunicorn builds it: PATH_INFO is the raw path percent-decoded as bytes
    (so '%2F' and '//' reach the app as they do under gunicorn), and header names holding '_' are
    dropped (gunicorn's default: 'X_Api_Key' must not pass for 'X-Api-Key')."""
    server = scope.get("server") or ("localhost", 80)
    client = scope.get("client") or ("", 0)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote_to_bytes(scope["raw_path"]).decode("latin-1"),
        "QUERY_STRING": scope["query_string"].decode("latin-1"),
        "SERVER_NAME": server[0],
        "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": f"HTTP/{scope['http_version']}",
        "REMOTE_ADDR": client[0],
        "REMOTE_PORT": str(client[1]),
        "CONTENT_LENGTH": str(length),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1")
        if "_" in name or name in ("content-length", "transfer-encoding"):
            continue
        key = "CONTENT_TYPE" if name == "content-type" else "HTTP_" + name.upper().replace("-", "_")
        value = raw_value.decode("latin-1")
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


async def _send_error(send: Any, status: int, code: str, message: str) -> None:
    body = orjson.dumps({"error": {"code": code, "message": message}})
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class _Worker(UvicornWorker):  # type: ignore[misc]
    CONFIG_KWARGS = {"loop": "uvloop", "http": HeaderDeadlineProtocol, "ws": "none", "lifespan": "off",
                     "access_log": False, "server_header": False}


class _Server(BaseApplication):  # type: ignore[misc]
    def __init__(self, options: dict[str, Any], app_factory: Callable[[], Any], threads: int) -> None:
        self.options = options
        self.app_factory = app_factory
        self.threads = threads
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        # Runs in each worker after the fork: every worker builds its own Service.
        sys.setswitchinterval(GIL_SWITCH_INTERVAL)
        app = self.app_factory()
        return WsgiBridge(app, self.threads, app.config["MAX_CONTENT_LENGTH"])


class _Logger(glogging.Logger):  # type: ignore[misc]
    """gunicorn's own log lines (and uvicorn's, which share its handlers) in the service's log_format."""

    log_format = "text"

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for handler in self.error_log.handlers:
            handler.setFormatter(logs.formatter(self.log_format))


def _child_exit(server: Any, worker: Any) -> None:
    """In the master, after a worker ended (even killed): its live gauges leave the metric sums."""
    metrics.process_exited(worker.pid)


def _worker_exit(server: Any, worker: Any) -> None:
    flask_app = getattr(getattr(worker, "wsgi", None), "app", None)
    service = flask_app.extensions.get("personalize") if flask_app is not None else None
    if service is not None:
        service.close()


def _default_app() -> Any:
    from personalize.app import create_app

    return create_app()


def run_server(host: str, port: int, workers: int, threads: int, app_factory: Callable[[], Any] = _default_app,
               log_format: str = "text") -> None:
    """Serve until SIGTERM/SIGINT. ``threads``: the WSGI pool of each worker (requests handled at once).

    gunicorn's access log stays off (``accesslog`` None; uvicorn's too): the app writes one access line
    per request itself (personalize/ops/logs.py), with the route and the request id.

    gunicorn's control socket (``gunicornc``) is off: its default is one path per user
    (``$XDG_RUNTIME_DIR/gunicorn.ctl``), shared by every gunicorn that user runs on the host.
    """
    options: dict[str, Any] = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": _Worker,
        "timeout": 60,
        "graceful_timeout": 15,
        "keepalive": KEEPALIVE_SECONDS,
        "accesslog": None,
        "worker_exit": _worker_exit,
        "child_exit": _child_exit,
        "logger_class": type("_Logger", (_Logger,), {"log_format": log_format}),
        "control_socket_disable": True,
    }
    _Server(options, app_factory, threads).run()
