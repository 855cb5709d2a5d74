"""The core command line: status from the store, and the --since/--until times every command takes."""

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from personalize.cli import cli
from personalize.cli_options import parse_time

ACTIONS = [{"id": a, "features": [{"item": {"kind": a}}]} for a in "abc"]


def test_status_reads_the_store_as_the_server_reports_it(make_app: Any, clock: Any) -> None:
    app = make_app(clock=clock, start=False, exploration=0.1)
    client, service = app.test_client(), app.extensions["personalize"]
    for i in range(4):
        out = client.post("/personalizer/v1.0/rank", json={"contextFeatures": [{"u": {"n": i}}], "actions": ACTIONS}).json
        if i % 2:
            client.post(f"/personalizer/v1.0/events/{out['eventId']}/reward", json={"value": 1.0})
    service.learner.step()
    served = client.get("/personalizer/v1.0/status").json

    result = CliRunner().invoke(cli, ["status", "--database-url", service.settings.resolved_database_url],
                                env={"PERSONALIZE_EXPLORATION": "0.1"})
    assert result.exit_code == 0, result.output
    stored = json.loads(result.output)
    assert stored["events"]["ranked"] == served["events"]["ranked"] == 4
    assert stored["events"]["rewarded"] == served["events"]["rewarded"] == 2
    assert stored["events"]["learned"] == served["events"]["learned"] == 2
    assert stored["model"]["version"] == served["model"]["version"] == 1
    assert stored["settings"] == served["settings"]
    assert stored["store"]["rows"] == served["store"]["rows"] and stored["store"]["rows"]["events"] == 4
    assert stored["store"]["oldestEventAt"] == served["store"]["oldestEventAt"] == clock.now
    assert stored["store"]["bytes"] > 0
    assert "servingVersion" not in stored["model"]  # a running server's ranker: ask it with --url


@pytest.mark.parametrize(("text", "expected"), [
    ("1795403000", 1795403000.0),
    ("1795403000.5", 1795403000.5),
    ("2026-11-23", datetime(2026, 11, 23, tzinfo=timezone.utc).timestamp()),
    ("2026-11-23T10:00:00Z", datetime(2026, 11, 23, 10, tzinfo=timezone.utc).timestamp()),
    ("2026-11-23T11:00:00+01:00", datetime(2026, 11, 23, 10, tzinfo=timezone.utc).timestamp()),
])
def test_times_are_unix_seconds_or_iso(text: str, expected: float) -> None:
    assert parse_time(text) == expected


def test_a_bad_time_is_a_usage_error_that_shows_both_forms() -> None:
    for text in ("yesterday", "1e400", "nan"):
        with pytest.raises(click.BadParameter, match="is not UNIX seconds or an ISO date/time"):
            parse_time(text)


def test_logs_export_filters_by_unix_seconds(make_app: Any, clock: Any, tmp_path: Path) -> None:
    app = make_app(clock=clock, start=False, reward_wait_time=5)
    client, service = app.test_client(), app.extensions["personalize"]
    started = clock()
    for _ in range(6):
        out = client.post("/personalizer/v1.0/rank", json={"contextFeatures": [{"u": {"n": 1}}], "actions": ACTIONS}).json
        client.post(f"/personalizer/v1.0/events/{out['eventId']}/reward", json={"value": 1.0})
        clock.advance(10.0)
    service.learner.step()

    out_file = tmp_path / "late.dsjson"
    result = CliRunner().invoke(cli, ["logs", "export", "-o", str(out_file), "--since", str(started + 30),
                                      "--database-url", service.settings.resolved_database_url])
    assert result.exit_code == 0, result.output
    assert len(out_file.read_text().splitlines()) == 3  # ranked at +30, +40, +50


def test_serve_refuses_a_taken_port_at_once_with_the_fix(tmp_path: Path) -> None:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = CliRunner().invoke(cli, ["serve", "--port", str(port), "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.output and "--port" in result.output


def _one_line_error(result: Any, expected: str) -> None:
    """A clean failure: exit status 1, a single line naming the problem, no traceback."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # not an unhandled exception
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.output


READ_ONLY = [
    ["status"],
    ["logs", "export"],
    ["evaluate", "--policy", "--cb_explore_adf"],
    ["evaluate-generators"],
    ["train"],
]


@pytest.mark.parametrize("command", READ_ONLY, ids=lambda c: " ".join(c[:2]))
def test_commands_that_read_the_store_refuse_an_empty_folder_without_creating_a_database(command: list[str], tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    result = CliRunner().invoke(cli, [*command, "--data-dir", str(folder)])
    _one_line_error(result, f"no database at {folder / 'personalize.db'}; start the service")
    assert not folder.exists()


@pytest.mark.postgres
@pytest.mark.parametrize("command", READ_ONLY, ids=lambda c: " ".join(c[:2]))
def test_commands_that_read_the_store_refuse_an_empty_postgres_database(command: list[str], postgres_url: str) -> None:
    from sqlalchemy import create_engine, inspect

    result = CliRunner().invoke(cli, [*command, "--database-url", postgres_url])
    _one_line_error(result, "(it has no personalize tables)")
    engine = create_engine(postgres_url)
    assert inspect(engine).get_table_names() == []  # nothing was created
    engine.dispose()


def test_an_unreachable_database_is_one_line() -> None:
    nobody = "postgresql+psycopg://postgres@127.0.0.1:1/personalize"  # nothing listens on port 1
    for command in (["status"], ["db", "upgrade"], ["import", "movielens"]):
        result = CliRunner().invoke(cli, [*command, "--database-url", nobody])
        _one_line_error(result, "cannot reach the database (OperationalError: connection failed")


def test_commands_that_write_create_the_database(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["db", "upgrade", "--data-dir", str(tmp_path / "new")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "new" / "personalize.db").is_file()
    status = CliRunner().invoke(cli, ["status", "--data-dir", str(tmp_path / "new")])
    assert status.exit_code == 0, status.output
    assert json.loads(status.output)["events"]["ranked"] == 0
    result = CliRunner().invoke(cli, ["evaluate", "--policy", "--cb_explore_adf", "--data-dir", str(tmp_path / "new")])
    _one_line_error(result, "no learned events with rewards in the selection")


def test_evaluate_reads_the_store_named_by_data_dir(make_app: Any, clock: Any, tmp_path: Path) -> None:
    app = make_app(clock=clock, start=False, reward_wait_time=5)
    client, service = app.test_client(), app.extensions["personalize"]
    for i in range(30):
        out = client.post("/personalizer/v1.0/rank", json={"contextFeatures": [{"u": {"n": i % 3}}], "actions": ACTIONS}).json
        client.post(f"/personalizer/v1.0/events/{out['eventId']}/reward", json={"value": float(i % 2)})
    clock.advance(10.0)
    service.learner.step()

    result = CliRunner().invoke(cli, ["evaluate", "--policy", "--cb_explore_adf --epsilon 0.2", "--bootstrap", "5",
                                      "--data-dir", str(tmp_path / "data")], env={"PERSONALIZE_DATA_DIR": None})
    assert result.exit_code == 0, result.output
    assert "30 logged events" in result.output and "--cb_explore_adf --epsilon 0.2" in result.output


def test_version_is_the_installed_package_version() -> None:
    from importlib.metadata import version

    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"personalize, version {version('personalize')}"


def test_status_url_reports_a_server_that_is_not_ours_or_not_ok_in_one_line() -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path.startswith("/personalizer/v1.0/status") and self.server.server_address[1] == ok_port:
                body, kind, status = b'{"error": {"code": "ServiceUnavailable", "message": "The database is unreachable"}}', "application/json", 503
            else:
                body, kind, status = b"<html>hello</html>", "text/html", 200
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    html, ours = ThreadingHTTPServer(("127.0.0.1", 0), Handler), ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ok_port = ours.server_address[1]
    for server in (html, ours):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        html_url, ours_url = f"http://127.0.0.1:{html.server_address[1]}", f"http://127.0.0.1:{ok_port}"
        _one_line_error(CliRunner().invoke(cli, ["status", "--url", html_url]), f"{html_url} answered 200 without JSON")
        _one_line_error(CliRunner().invoke(cli, ["status", "--url", ours_url]), f"{ours_url} answered 503: The database is unreachable")
    finally:
        for server in (html, ours):
            server.shutdown()
            server.server_close()


def _usage_error(result: Any, expected: str) -> None:
    """click's usage error: exit status 2, the message named, no traceback."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output and expected in result.output, result.output


@pytest.mark.parametrize("args, expected", [
    (["serve", "--workers", "0"], "--workers"),
    (["serve", "--threads", "0"], "--threads"),
    (["serve", "--port", "99999"], "--port"),
    (["serve", "--port", "-1"], "--port"),
    (["--log-level", "BOGUS", "status"], "--log-level"),
])
def test_out_of_range_options_are_usage_errors(args: list[str], expected: str, tmp_path: Path) -> None:
    _usage_error(CliRunner().invoke(cli, [*args, "--data-dir", str(tmp_path)] if args[0] == "serve" else args), expected)


def test_evaluate_names_a_policy_vw_refuses(make_app: Any, clock: Any, tmp_path: Path) -> None:
    app = make_app(clock=clock, start=False, reward_wait_time=5)
    client, service = app.test_client(), app.extensions["personalize"]
    for i in range(10):
        out = client.post("/personalizer/v1.0/rank", json={"actions": ACTIONS}).json
        client.post(f"/personalizer/v1.0/events/{out['eventId']}/reward", json={"value": float(i % 2)})
    clock.advance(10.0)
    service.learner.step()
    for policy in ("x", "--cb_explore_adf --bogus"):
        result = CliRunner().invoke(cli, ["evaluate", "--policy", policy, "--bootstrap", "5",
                                          "--data-dir", str(tmp_path / "data")], env={"PERSONALIZE_DATA_DIR": None})
        _usage_error(result, "--policy")


@pytest.mark.parametrize("url", ["bogus://x", "not a url"])
def test_a_database_url_that_is_not_one_is_one_line(url: str) -> None:
    _one_line_error(CliRunner().invoke(cli, ["status", "--database-url", url]), "database URL")


def test_files_that_are_not_utf8_are_one_line(tmp_path: Path) -> None:
    binary = tmp_path / "bad.csv"
    binary.write_bytes(b"\xff\xfe\x00id\x00\n\x81\x82")
    config = tmp_path / "bad.toml"
    config.write_bytes(b"\xff\xfe\x81")
    result = CliRunner().invoke(cli, ["status", "--config", str(config), "--data-dir", str(tmp_path)])
    _usage_error(result, "cannot read config file")
    for kind in ("items", "interactions"):
        result = CliRunner().invoke(cli, ["import", kind, str(binary), "--data-dir", str(tmp_path)])
        _one_line_error(result, "is not UTF-8 text")
