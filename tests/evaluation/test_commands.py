"""`personalize evaluations run|list|show` and `personalize policy get|set|reset` on the store."""

from __future__ import annotations

import json
from typing import Any

from click.testing import CliRunner

from personalize.cli import cli
from tests.evaluation.simlog import BAD, GOOD


def _db(app: Any) -> list[str]:
    return ["--database-url", app.extensions["personalize"].settings.resolved_database_url]


def test_evaluations_run_list_show(logged_app: Any) -> None:
    runner = CliRunner()
    done = runner.invoke(cli, ["evaluations", "run", "--id", "cli-1", "--name", "cli", "--policy", GOOD, "--policy", BAD,
                               *_db(logged_app)])
    assert done.exit_code == 0, done.output
    assert "Succeeded" in done.output and "policy 1" in done.output and "1200 events" in done.output
    listed = runner.invoke(cli, ["evaluations", "list", *_db(logged_app)])
    assert listed.exit_code == 0 and listed.output.startswith("cli-1  'cli'  Manual  Succeeded")
    shown = runner.invoke(cli, ["evaluations", "show", "cli-1", "--json", *_db(logged_app)])
    rows = {r["name"]: r for r in json.loads(shown.output)["result"]["policies"]}
    assert rows["policy 1"]["summary"]["expectedReward"] > rows["policy 2"]["summary"]["expectedReward"]
    submitted = runner.invoke(cli, ["evaluations", "run", "--id", "cli-2", "--submit", *_db(logged_app)])
    assert submitted.exit_code == 0 and "submitted" in submitted.output
    assert "NotSubmitted" in runner.invoke(cli, ["evaluations", "show", "cli-2", *_db(logged_app)]).output


def test_cli_errors_are_one_line(logged_app: Any) -> None:
    runner = CliRunner()
    for args, text in ((["evaluations", "show", "nope"], "no evaluation 'nope'"),
                       (["evaluations", "run", "--policy", "--cb_explore_adf --nope"], "--nope"),
                       (["evaluations", "run", "--since", "2030-01-01", "--until", "2020-01-01"], "--until must be after"),
                       (["policy", "set", "--arguments", "-f /tmp/x"], "-f is not allowed")):
        done = runner.invoke(cli, [*args, *_db(logged_app)])
        assert done.exit_code != 0 and text in done.output, done.output
        assert "Traceback" not in done.output


def test_policy_get_set_reset(logged_app: Any) -> None:
    runner = CliRunner()
    assert json.loads(runner.invoke(cli, ["policy", "get", *_db(logged_app)]).output)["name"] == "default"
    done = runner.invoke(cli, ["policy", "set", "--arguments", GOOD + " --dsjson", "--name", "good", *_db(logged_app)])
    assert done.exit_code == 0, done.output
    assert json.loads(runner.invoke(cli, ["policy", "get", *_db(logged_app)]).output) == {"name": "good", "arguments": GOOD}
    client = logged_app.test_client()
    assert client.get("/personalizer/v1.0/configurations/policy").json == {"name": "good", "arguments": GOOD}
    assert json.loads(runner.invoke(cli, ["policy", "reset", *_db(logged_app)]).output)["name"] == "default"
