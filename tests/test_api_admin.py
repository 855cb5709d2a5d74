"""The administration operations (configuration, model, logs) through Microsoft's PersonalizerAdministrationClient
against two real `personalize serve` processes with keys sharing one database, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
from azure.ai.personalizer import PersonalizerAdministrationClient, PersonalizerClient
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import HttpResponseError

from tests.conftest import LiveServer

CLIENT_KEY = "client-key-1"
ADMIN_KEY = "admin-key-1"
ACTIONS = [{"id": a, "features": [{"item": {"kind": a}}]} for a in ("news", "sports", "science", "music")]


@pytest.fixture
def servers(tmp_path: Path, database_url: str) -> Iterator[tuple[str, str]]:
    """Two servers on one database (a second process must see what the first changes)."""
    env = {"PERSONALIZE_API_KEYS": CLIENT_KEY, "PERSONALIZE_ADMIN_KEYS": ADMIN_KEY, "PERSONALIZE_DATABASE_URL": database_url,
           "PERSONALIZE_CONFIG_POLL_INTERVAL": "0.2", "PERSONALIZE_MODEL_SIGNING_KEY": "shared-signing-secret",
           "PERSONALIZE_REWARD_WAIT_TIME": "1"}
    one = LiveServer(tmp_path / "one", env=env).start()
    two = LiveServer(tmp_path / "two", env=env).start()
    yield one.url, two.url
    two.stop()
    one.stop()


def _until(check: Any, seconds: float = 10) -> Any:
    deadline = time.time() + seconds
    while True:
        value = check()
        if value or time.time() > deadline:
            return value
        time.sleep(0.05)


def test_every_admin_operation_through_the_sdk(servers: tuple[str, str]) -> None:
    one, two = servers
    admin = PersonalizerAdministrationClient(one, AzureKeyCredential(ADMIN_KEY), retry_total=0)
    client_two = PersonalizerClient(two, AzureKeyCredential(CLIENT_KEY), retry_total=0)

    # -- configuration: round trip, validation, a second process applies a change ------------------------
    config = admin.get_service_configuration()
    assert config["learningMode"] == "Online" and config["rewardWaitTime"] == "PT1S"
    changed = admin.update_service_configuration({**config, "learningMode": "Apprentice", "explorationPercentage": 0.3,
                                                  "rewardWaitTime": "PT2S"})
    assert changed["learningMode"] == "Apprentice" and changed["rewardWaitTime"] == "PT2S"
    assert admin.get_service_configuration() == changed
    with pytest.raises(HttpResponseError) as excinfo:
        admin.update_service_configuration({**changed, "rewardWaitTime": "two seconds"})
    assert excinfo.value.status_code == 400 and "rewardWaitTime" in str(excinfo.value)

    def baseline_served() -> bool:
        ranked = client_two.rank({"actions": ACTIONS})
        return ranked["rewardActionId"] == "news" and ranked["ranking"][0]["probability"] == 1.0

    assert _until(lambda: all(baseline_served() for _ in range(5)))  # the second process switched to Apprentice
    assert all(baseline_served() for _ in range(30))
    status = requests.get(f"{two}/personalizer/v1.0/status", headers={"Ocp-Apim-Subscription-Key": CLIENT_KEY}, timeout=10).json()
    assert status["settings"]["learningMode"] == "Apprentice" and status["settings"]["exploration"] == 0.3

    # -- client keys cannot administer --------------------------------------------------------------------
    not_admin = PersonalizerAdministrationClient(one, AzureKeyCredential(CLIENT_KEY), retry_total=0)
    for call in (not_admin.get_service_configuration, not_admin.get_model_properties, not_admin.reset_model,
                 not_admin.delete_logs, lambda: b"".join(not_admin.export_model())):
        with pytest.raises(HttpResponseError) as excinfo:
            call()
        assert excinfo.value.status_code == 403

    # -- model: export, reset, import; the other server serves the import ------------------------------
    admin.update_service_configuration({**changed, "learningMode": "Online"})
    for i in range(40):
        ranked = client_two.rank({"actions": ACTIONS, "eventId": f"learn-{i}",
                                  "contextFeatures": [{"user": {"segment": "a"}}]})
        client_two.reward(ranked["eventId"], {"value": 1.0 if ranked["rewardActionId"] == "sports" else 0.0})
    # every event joined and learned (the Apprentice ones after their 2 s wait): nothing is learned on top of an import
    assert _until(lambda: _status(one)["events"]["pending"] == 0 and _status(one)["events"]["learned"] > 40, 20)
    raw = b"".join(admin.export_model(signed=False))
    signed = b"".join(admin.export_model(signed=True))
    assert zipfile.ZipFile(io.BytesIO(signed)).read("model.vw") == raw
    properties = admin.get_model_properties()
    assert properties["creationTime"] <= properties["lastModifiedTime"]
    admin.reset_model()
    after_reset = _status(one)["model"]["version"]
    assert b"".join(admin.export_model()) != raw
    assert admin.get_model_properties()["creationTime"] >= properties["lastModifiedTime"]
    admin.import_model(io.BytesIO(signed))  # this server signs: it imports signed archives only
    imported = _status(one)["model"]["version"]
    assert imported == after_reset + 1
    assert b"".join(admin.export_model()) == raw
    assert _until(lambda: _status(two)["model"]["servingVersion"] >= imported)
    with pytest.raises(HttpResponseError) as excinfo:
        admin.import_model(io.BytesIO(raw))
    assert excinfo.value.status_code == 400 and "signed" in str(excinfo.value)
    with pytest.raises(HttpResponseError) as excinfo:
        admin.import_model(io.BytesIO(b"not a model"))
    assert excinfo.value.status_code == 400
    assert b"".join(admin.export_model()) == raw

    # -- logs: date range, delete (the model stays) ---------------------------------------------------
    logs = admin.get_log_properties()
    assert logs["dateRange"]["from"] <= logs["dateRange"]["to"]
    admin.delete_logs()
    assert admin.get_log_properties() == {"dateRange": {}}
    assert _status(one)["events"]["ranked"] == 0
    assert b"".join(admin.export_model()) == raw


def _status(url: str) -> dict[str, Any]:
    return requests.get(f"{url}/personalizer/v1.0/status", headers={"Ocp-Apim-Subscription-Key": ADMIN_KEY}, timeout=10).json()
