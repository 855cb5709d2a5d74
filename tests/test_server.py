"""The production server (personalize/server.py) through real sockets: slow clients, paths, bodies,
deadlines and gunicorn's control socket. Loopback only; every server and socket is closed."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import time
from typing import Any, Iterator

import pytest

from bench.slow_clients import SlowClients, probe
from personalize import server
from tests.conftest import LiveServer

API = "/personalizer/v1.0"
ACTIONS = [{"id": "a", "features": [{"x": 1}]}, {"id": "b", "features": [{"x": 2}]}]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One `personalize serve` for the module, with its own HOME and XDG_RUNTIME_DIR to look into."""
    home = tmp_path_factory.mktemp("home")
    (home / "run").mkdir()
    live = LiveServer(home / "data", env={"HOME": str(home), "XDG_RUNTIME_DIR": str(home / "run")}).start()
    yield live
    live.stop()


def call(port: int, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
         chunked: bool = False) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        if chunked:
            conn.putrequest(method, path)
            for name, value in {"Content-Type": "application/json", "Transfer-Encoding": "chunked", **(headers or {})}.items():
                conn.putheader(name, value)
            conn.endheaders()
            for start in range(0, len(body or b""), 65536):
                piece = (body or b"")[start:start + 65536]
                conn.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            conn.send(b"0\r\n\r\n")
        else:
            conn.request(method, path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def rank(port: int, event_id: str) -> None:
    status, _, body = call(port, "POST", f"{API}/rank", json.dumps({"eventId": event_id, "actions": ACTIONS}).encode())
    assert status == 201, body


def test_slow_clients_do_not_stop_rank_and_are_closed_at_the_header_deadline(live: LiveServer) -> None:
    """200 connections trickling a byte a second (half headers, half a 1 MB body): every Rank of a
    prober meanwhile succeeds, within a loose bound; the header tricklers, and a connection that
    sends nothing, are cut at HEADER_SECONDS."""
    with socket.create_connection(("127.0.0.1", live.port)) as idle, SlowClients(live.port, 200) as clients:
        time.sleep(2)  # all open and trickling
        result = probe(live.port, seconds=server.HEADER_SECONDS, rate=10)
        closed = clients.closed_by_server
        idle.settimeout(5)
        assert idle.recv(1) == b""  # closed by the server
    assert result.errors == []
    assert len(result.latencies) >= 5 * server.HEADER_SECONDS
    assert max(result.latencies) < 5.0, sorted(result.latencies)[-5:]
    assert closed >= 100  # every header trickler, cut once (body tricklers have BODY_SECONDS)


def test_event_ids_with_slashes_reach_the_handler_untouched(live: LiveServer) -> None:
    """'//', a leading '/' and '%2F' are routed as they are, as under gunicorn's own parser."""
    for event_id in ("/lead", "dbl//slash", "enc/oded"):
        rank(live.port, event_id)
    assert call(live.port, "POST", f"{API}/events//lead/reward", b'{"value": 1}')[0] == 204
    assert call(live.port, "POST", f"{API}/events/lead/reward", b'{"value": 1}')[0] == 404
    assert call(live.port, "POST", f"{API}/events/dbl//slash/reward", b'{"value": 1}')[0] == 204
    assert call(live.port, "POST", f"{API}/events/dbl/slash/reward", b'{"value": 1}')[0] == 404
    assert call(live.port, "POST", f"{API}/events/enc%2Foded/reward", b'{"value": 1}')[0] == 204


def test_bodies_chunked_and_over_the_limit(live: LiveServer) -> None:
    ranked = json.dumps({"actions": ACTIONS}).encode()
    assert call(live.port, "POST", f"{API}/rank", ranked, chunked=True)[0] == 201
    big = b'{"actions": [], "pad": "' + b"x" * 1_100_000 + b'"}'  # over the default max_body_bytes (1 MiB)
    for chunked in (False, True):
        status, headers, body = call(live.port, "POST", f"{API}/rank", big, chunked=chunked)
        assert status == 413, body
        assert json.loads(body)["error"]["code"] == "PayloadTooLarge"
        assert headers["connection"] == "close"  # the rest of the body is not read
    padded = ranked[:-1] + b" " * 900_000 + b"}"  # large but within the limit: parsed whole
    assert call(live.port, "POST", f"{API}/rank", padded, chunked=True)[0] == 201


def test_headers_over_the_bound_are_a_400_and_closed(live: LiveServer) -> None:
    with socket.create_connection(("127.0.0.1", live.port), timeout=10) as sock:
        sock.sendall(f"GET {API}/health HTTP/1.1\r\nHost: x\r\nX-Big: ".encode())
        with pytest.raises(OSError):  # reset once the server has answered and closed
            for _ in range(100):
                sock.sendall(b"a" * server.MAX_HEADER_BYTES)
        assert sock.recv(12) in (b"HTTP/1.1 400", b"")
    status, _, body = call(live.port, "GET", f"{API}/health", headers={"X-Fine": "a" * 8000})
    assert status == 200, body


def test_server_header_names_no_software(live: LiveServer) -> None:
    status, headers, _ = call(live.port, "GET", f"{API}/health")
    assert status == 200 and "server" not in headers


def test_gunicorn_control_socket_is_off(live: LiveServer) -> None:
    """gunicorn 27 would listen on $XDG_RUNTIME_DIR/gunicorn.ctl (else ~/.gunicorn/): one path for
    every gunicorn of the user on the host. `personalize serve` opens none."""
    home = live.data_dir.parent
    assert sorted(p.name for p in home.rglob("*") if p.is_socket() or "gunicorn" in p.name) == []


# --- WsgiBridge in-process: what a live test would wait BODY_SECONDS for --------------------------


def run_bridge(app: Any, messages: list[dict[str, Any]], headers: list[tuple[bytes, bytes]], max_body: int = 100,
               delay: float = 0.0) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Run one request through a WsgiBridge; returns (what was sent, the environs the app saw)."""
    seen: list[dict[str, Any]] = []

    def wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append({**environ, "body": environ["wsgi.input"].read()})
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"o", b"k"]

    scope = {"type": "http", "method": "POST", "path": "/p", "raw_path": b"/a%2Fb//c", "query_string": b"q=1",
             "http_version": "1.1", "headers": headers, "server": ("127.0.0.1", 1), "client": ("127.0.0.1", 2)}
    queue = list(messages)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(delay)
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    bridge = server.WsgiBridge(app or wsgi, 1, max_body)
    try:
        asyncio.run(bridge(scope, receive, send))
    finally:
        bridge.executor.shutdown()
    return sent, seen


def test_bridge_environ_and_response() -> None:
    sent, seen = run_bridge(None, [{"type": "http.request", "body": b"ab", "more_body": True},
                                   {"type": "http.request", "body": b"c", "more_body": False}],
                            [(b"transfer-encoding", b"chunked"), (b"x-key", b"1"), (b"x-key", b"2"), (b"x_key", b"spoof")])
    environ = seen[0]
    assert environ["body"] == b"abc" and environ["CONTENT_LENGTH"] == "3"
    assert environ["PATH_INFO"] == "/a/b//c" and environ["QUERY_STRING"] == "q=1"
    assert environ["HTTP_X_KEY"] == "1,2"  # repeated headers joined; 'x_key' dropped, not merged
    assert "HTTP_TRANSFER_ENCODING" not in environ
    assert sent[0]["status"] == 200 and sent[1]["body"] == b"ok"


def test_bridge_body_deadline_is_a_408(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server, "BODY_SECONDS", 0.2)
    trickle = [{"type": "http.request", "body": b"x", "more_body": True}] * 50
    sent, seen = run_bridge(None, trickle, [(b"content-length", b"60")], delay=0.05)
    assert seen == []  # the app never ran
    assert sent[0]["status"] == 408 and (b"connection", b"close") in sent[0]["headers"]
    assert json.loads(sent[1]["body"])["error"]["code"] == "RequestTimeout"


def test_bridge_reads_no_further_than_one_byte_past_the_limit() -> None:
    chunks = [{"type": "http.request", "body": b"x" * 60, "more_body": True}] * 3
    sent, seen = run_bridge(None, chunks, [(b"transfer-encoding", b"chunked")])
    assert seen[0]["body"] == b"" and seen[0]["CONTENT_LENGTH"] == "120"  # the app's own 413 answers this
    assert (b"connection", b"close") in sent[0]["headers"]

