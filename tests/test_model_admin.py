"""Model export, import, reset and properties (personalize/model_admin.py), and the logs operations."""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from personalize.cli import cli
from personalize.model_admin import vw_options
from personalize.models import Event, ModelSnapshot
from personalize.vw import Model

P = "/personalizer"
V1 = "/personalizer/v1.0"
ACTIONS = [{"id": a, "features": [{"item": {"kind": a}}]} for a in ("news", "sports", "science")]
CONTEXT = [{"user": {"segment": "a"}}]
BINARY = {"content_type": "application/octet-stream"}


def _train(client: Any, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        ranked = client.post(f"{V1}/rank", json={"actions": ACTIONS, "contextFeatures": CONTEXT, "eventId": f"t-{i}"}).json
        value = 1.0 if ranked["rewardActionId"] == "sports" else 0.0
        assert client.post(f"{V1}/events/t-{i}/reward", json={"value": value}).status_code == 204


def _pmf(client: Any) -> dict[str, float]:
    ranked = client.post(f"{V1}/rank", json={"actions": ACTIONS, "contextFeatures": CONTEXT}).json
    return {entry["id"]: entry["probability"] for entry in ranked["ranking"]}


def _export(client: Any, signed: bool = False) -> bytes:
    answer = client.get(f"{P}/model?api-version=2022-09-01-preview&signed={'true' if signed else 'false'}")
    assert answer.status_code == 200, answer.data[:300]
    assert answer.mimetype == "application/octet-stream"
    return answer.data


@pytest.fixture
def trained(make_app: Any, database_url: str, clock: Any) -> Any:
    app = make_app(database_url=database_url, clock=clock, start=False, learner="inline")
    _train(app.test_client(), 60)
    return app


def test_export_reset_import_gives_back_the_same_bytes_and_predictions(trained: Any, clock: Any) -> None:
    client = trained.test_client()
    service = trained.extensions["personalize"]
    exported = _export(client)
    before = _pmf(client)
    assert max(before.values()) > 0.6  # it learned something
    version = service.ranker.version
    clock.advance(10)
    assert client.delete(f"{P}/model").status_code == 204
    assert service.ranker.version == version + 1
    assert _export(client) != exported
    assert _pmf(client) == pytest.approx({a["id"]: 1 / 3 for a in ACTIONS})  # untrained
    assert client.get(f"{P}/model/properties").json["creationTime"] == _iso(clock.now)
    clock.advance(10)
    assert client.put(f"{P}/model", data=exported, **BINARY).status_code == 204
    assert _export(client) == exported
    assert _pmf(client) == before
    properties = client.get(f"{P}/model/properties").json
    assert properties == {"creationTime": _iso(clock.now), "lastModifiedTime": _iso(clock.now)}
    # the learner continues from the imported model: its next snapshot builds on it
    _train(client, 5, start=100)
    with service.db.read() as session:
        newest = session.query(ModelSnapshot).order_by(ModelSnapshot.version.desc()).first()
    assert newest.version == version + 2 + 5 and newest.events_learned == 5  # one snapshot per inline step; imported raw: counted from 0
    assert newest.lineage_created_at == pytest.approx(clock.now)
    assert max(_pmf(client).values()) > 0.6


def _iso(ts: float) -> str:
    from datetime import datetime, timezone
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def _other_policy_model() -> bytes:
    return Model(["--cb_explore_adf", "--epsilon", "0.1", "-q", "ca", "--quiet"]).serialize()


def _plain_model() -> bytes:
    import vowpal_wabbit_next as vw
    return vw.Workspace(["--quiet"]).serialize()


@pytest.mark.parametrize("name, make, code", [
    ("empty", lambda good: b"", "InvalidModelImportFormat"),
    ("junk", lambda good: b"not a model at all", "InvalidModelImportFormat"),
    ("zeros", lambda good: bytes(2000), "InvalidModelImportFormat"),
    ("cut", lambda good: good[:-10], "InvalidModelImportFormat"),
    ("padded", lambda good: good + b"\0" * 16, "InvalidModelImportFormat"),
    ("half", lambda good: good[: len(good) // 2], "InvalidModelImportFormat"),
    ("other policy", lambda good: _other_policy_model(), "InvalidModelImportFormat"),
    ("not a bandit", lambda good: _plain_model(), "InvalidModelImportFormat"),
    ("bad zip", lambda good: b"PK\x03\x04" + b"x" * 100, "InvalidModelImportFormat"),
    ("signed without a key here", lambda good: _zip(good, "k"), "InvalidModelImportSignature"),
])
def test_a_file_that_is_not_a_model_of_this_policy_is_a_400_and_changes_nothing(
        trained: Any, name: str, make: Any, code: str) -> None:
    client = trained.test_client()
    service = trained.extensions["personalize"]
    good = _export(client)
    before, version = _pmf(client), service.ranker.version
    answer = client.put(f"{P}/model", data=make(good), **BINARY)
    assert answer.status_code == 400, (name, answer.json)
    assert answer.json["error"]["code"] == code and answer.json["error"]["target"] == "body"
    assert _export(client) == good and _pmf(client) == before and service.ranker.version == version
    with service.db.read() as session:
        assert session.query(ModelSnapshot).order_by(ModelSnapshot.version.desc()).first().version == version


def _zip(model: bytes, key: str, **meta: Any) -> bytes:
    import hashlib
    import hmac
    metadata = json.dumps({"format": "personalize-model/1", "modelSha256": hashlib.sha256(model).hexdigest(), **meta}).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("model.vw", model)
        archive.writestr("metadata.json", metadata)
        archive.writestr("signature", hmac.new(key.encode(), metadata, hashlib.sha256).hexdigest())
    return buffer.getvalue()


def test_signed_exports_are_verified_on_import(make_app: Any, clock: Any) -> None:
    app = make_app(clock=clock, start=False, learner="inline", model_signing_key="s3cret")
    client = app.test_client()
    _train(client, 30)
    raw, signed = _export(client), _export(client, signed=True)
    with zipfile.ZipFile(io.BytesIO(signed)) as archive:
        assert sorted(archive.namelist()) == ["metadata.json", "model.vw", "signature"]
        assert archive.read("model.vw") == raw
        metadata = json.loads(archive.read("metadata.json"))
    assert metadata["vwArgs"].startswith("--cb_explore_adf") and metadata["eventsLearned"] == 30
    before = _pmf(client)
    client.delete(f"{P}/model")
    refused = client.put(f"{P}/model", data=raw, **BINARY)  # a signing server takes signed archives only
    assert refused.status_code == 400 and refused.json["error"]["code"] == "InvalidModelImportSignature"
    for forged in (_zip(raw, "another-key"), _zip(_other_policy_model(), "another-key"),
                   signed.replace(b"model.vw", b"model.vx")):
        answer = client.put(f"{P}/model", data=forged, **BINARY)
        assert answer.status_code == 400, answer.json
    assert client.put(f"{P}/model", data=signed, content_type="application/zip").status_code == 204
    assert _export(client) == raw and _pmf(client) == before
    # a signed archive of another policy: the signature is right, the model is not for this policy
    wrong = _zip(_other_policy_model(), "s3cret")
    answer = client.put(f"{P}/model", data=wrong, **BINARY)
    assert answer.status_code == 400 and "options" in answer.json["error"]["message"]


def test_signed_export_needs_a_key(make_app: Any) -> None:
    client = make_app(start=False).test_client()
    answer = client.get(f"{P}/model?signed=true")
    assert answer.status_code == 400 and answer.json["error"]["target"] == "signed"
    assert "PERSONALIZE_MODEL_SIGNING_KEY" in answer.json["error"]["message"]
    assert client.get(f"{P}/model?signed=maybe").status_code == 400
    assert vw_options(_export(client)) == vw_options(Model(["--cb_explore_adf", "--squarecb", "--cb_type", "mtr", "-q", "ca",
                                                              "-l", "2", "--quiet"]).serialize())


def test_model_files_are_octet_stream(make_app: Any) -> None:
    client = make_app(start=False).test_client()
    answer = client.put(f"{P}/model", data=b"abc", content_type="text/plain")
    assert answer.status_code == 415 and "application/octet-stream" in answer.json["error"]["message"]
    assert client.get(f"{P}/model/properties").json == {}  # nothing learned yet


def test_another_process_serves_an_imported_model_and_its_learner_continues(make_app: Any, database_url: str) -> None:
    one = make_app(database_url=database_url, config_poll_interval=0.05, learner_interval=0.01)
    two = make_app(database_url=database_url, config_poll_interval=0.05, learner_interval=0.01)
    client = one.test_client()
    _train(client, 20)
    deadline = time.time() + 10
    while client.get(f"{V1}/status").json["events"]["learned"] < 20 and time.time() < deadline:
        time.sleep(0.02)  # all learned: nothing is left to learn on top of the import
    fresh = Model(["--cb_explore_adf", "--squarecb", "--cb_type", "mtr", "-q", "ca", "-l", "2", "--quiet"]).serialize()
    assert client.put(f"{P}/model", data=fresh, **BINARY).status_code == 204
    with one.extensions["personalize"].db.read() as session:
        imported = session.query(ModelSnapshot).order_by(ModelSnapshot.version.desc()).first().version
    other = two.extensions["personalize"]
    deadline = time.time() + 5
    while other.ranker.version < imported and time.time() < deadline:
        time.sleep(0.02)
    assert other.ranker.version >= imported
    assert _pmf(two.test_client()) == pytest.approx({a["id"]: 1 / 3 for a in ACTIONS})
    two_client = two.test_client()
    for i in range(3):
        ranked = two_client.post(f"{V1}/rank", json={"actions": ACTIONS, "eventId": f"after-{i}"}).json
        two_client.post(f"{V1}/events/after-{i}/reward", json={"value": 1.0})
    deadline = time.time() + 10
    newest = None
    while time.time() < deadline:
        with other.db.read() as session:
            newest = session.query(ModelSnapshot).order_by(ModelSnapshot.version.desc()).first()
        if newest.version > imported and newest.events_learned >= 3:
            break
        time.sleep(0.05)
    assert newest is not None and newest.version > imported and newest.events_learned == 3  # from the import, not the old model


# -- logs ------------------------------------------------------------------------------------------------
def test_log_properties_and_delete(trained: Any, clock: Any) -> None:
    client = trained.test_client()
    service = trained.extensions["personalize"]
    first = clock.now
    clock.advance(100)
    client.post(f"{V1}/rank", json={"actions": ACTIONS, "eventId": "pending"})  # still waiting for its reward
    assert client.get(f"{P}/logs/properties").json == {"dateRange": {"from": _iso(first), "to": _iso(clock.now)}}
    model = _export(client)
    assert client.delete(f"{P}/logs?api-version=2022-09-01-preview").status_code == 204
    assert client.get(f"{P}/logs/properties").json == {"dateRange": {}}
    assert _export(client) == model  # the model stays
    status = client.get(f"{V1}/status").json
    assert status["events"]["ranked"] == 0 and status["rewards"]["received"] == 0
    gone = client.post(f"{V1}/events/pending/reward", json={"value": 1.0})
    assert gone.status_code == 404 and gone.json["error"]["code"] == "EventNotFound"
    with service.db.read() as session:
        assert session.query(Event).count() == 0
    _train(client, 3, start=500)  # logging and learning go on
    assert client.get(f"{V1}/status").json["events"]["learned"] == 3


# -- CLI -----------------------------------------------------------------------------------------------
def test_cli_model_export_import_reset(tmp_path: Path, make_app: Any) -> None:
    data_dir = tmp_path / "cli"
    app = make_app(start=False, learner="inline", data_dir=str(data_dir))
    _train(app.test_client(), 20)
    app.extensions["personalize"].close()
    env = {"PERSONALIZE_DATA_DIR": str(data_dir), "PERSONALIZE_MODEL_SIGNING_KEY": ""}
    runner = CliRunner()
    out = tmp_path / "model.vw"
    done = runner.invoke(cli, ["model", "export", "-o", str(out)], env=env)
    assert done.exit_code == 0, done.output
    exported = out.read_bytes()
    assert runner.invoke(cli, ["model", "reset", "--yes"], env=env).exit_code == 0
    done = runner.invoke(cli, ["model", "import", str(out)], env=env)
    assert done.exit_code == 0 and "imported as model version" in done.output
    again = tmp_path / "again.vw"
    runner.invoke(cli, ["model", "export", "-o", str(again)], env=env)
    assert again.read_bytes() == exported
    junk = tmp_path / "junk.vw"
    junk.write_bytes(b"junk")
    for args in (["model", "import", str(junk)], ["model", "export", "--signed", "-o", str(tmp_path / "x")]):
        refused = runner.invoke(cli, args, env=env)
        assert refused.exit_code == 1 and "Traceback" not in refused.output
        assert len(refused.output.strip().splitlines()) == 1, refused.output


def test_reset_and_import_use_the_stored_policy_so_the_learner_keeps_the_model(trained: Any, clock: Any) -> None:
    """With a policy stored by PUT /configurations/policy, a reset or imported model is stored under that policy:
    the learner continues from it instead of rebuilding a model of the policy in force from the log."""
    client = trained.test_client()
    service = trained.extensions["personalize"]
    policy = {"name": "p", "arguments": "--cb_explore_adf --epsilon 0.1 -q ca"}
    assert client.put(f"{P}/configurations/policy", json=policy).status_code == 200
    service.learner.step()  # follows the policy: rebuilds the model under it from the log
    args = " ".join(service.settings.replace_policy(policy["arguments"]).vw_args)
    assert service.learner.vw_args == args
    exported = _export(client)
    assert client.delete(f"{P}/model").status_code == 204
    assert client.put(f"{P}/model", data=exported, content_type="application/octet-stream").status_code == 204
    with service.sessions() as session:
        newest = session.query(ModelSnapshot).order_by(ModelSnapshot.version.desc()).first()
    assert newest.vw_args == args and service.ranker.vw_args == args.split()
    version = newest.version
    service.learner.step()  # restores from the imported snapshot: same policy, no rebuild
    assert service.learner.vw_args == args and service.learner.version == version
