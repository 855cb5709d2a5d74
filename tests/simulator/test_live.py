from pathlib import Path

import pytest
from click.testing import CliRunner

from personalize.cli import cli
from simulator.runner import run
from tests.conftest import LiveServer


def test_runner_drives_a_live_server(small_config, live_server: str, tmp_path: Path) -> None:
    config = small_config.with_overrides(run={"policies": ["uniform", "default", "oracle"]})
    result = run(config, 30, tmp_path, url=live_server)
    assert set(result.summaries) == {"uniform", "default", "oracle"}
    assert 0.0 <= result.summaries["default"]["value"] <= 1.0
    assert result.service_events_per_second["default"] > 0


@pytest.mark.parametrize("mode", ["inline", "generators"])
def test_simulate_url_sends_the_environment_key(mode: str, tmp_path: Path) -> None:
    """`simulate run --url` against a server with keys: the admin key of its environment reaches Rank,
    Reward and (generators mode) the catalog; without it the server's 401 is a one-line error."""
    keys = {"PERSONALIZE_API_KEYS": "client-key", "PERSONALIZE_ADMIN_KEYS": "admin-key"}
    server = LiveServer(tmp_path / "data", env=keys).start()
    try:
        args = ["simulate", "run", "--url", server.url, "--events", "20", "--policies", "default",
                "--out", str(tmp_path / "out")]
        config = tmp_path / "sim.toml"
        config.write_text(f'[items]\nsource = "synthetic"\ncount = 60\n[users]\nsource = "synthetic"\ncount = 10\n'
                          f'[run]\nmode = "{mode}"\nactions = 5\n')
        args += ["--config", str(config)]
        done = CliRunner().invoke(cli, args, env=keys)
        assert done.exit_code == 0, done.output
        assert "service 'default'" in done.output
        refused = CliRunner().invoke(cli, args, env={"PERSONALIZE_API_KEYS": "", "PERSONALIZE_ADMIN_KEYS": ""})
        assert refused.exit_code != 0
        assert refused.output.strip().splitlines()[-1].startswith("Error: the service at")
        assert "HTTP 401" in refused.output
        assert isinstance(refused.exception, SystemExit)  # click's error exit, not a traceback
    finally:
        server.stop()
