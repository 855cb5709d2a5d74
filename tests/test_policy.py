"""The learning policy (personalize/policy.py, personalize/api/policy.py): checked before it is accepted,
stored in the database, followed by the learner (a new model rebuilt from the log) and every ranker."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from personalize.cli import cli
from personalize.config import DEFAULT_LEARNING_POLICY, SettingsError, load_settings
from personalize.models import ModelSnapshot
from personalize.policy import PolicyError, check_policy, check_policy_in_process, normalize

V1 = "/personalizer/v1.0"
EPSILON = "--cb_explore_adf --epsilon 0.1 -q ca"
ACTIONS = [{"id": x, "features": [{"item": {"k": x}}]} for x in "abc"]


@pytest.mark.parametrize("arguments,problem", [
    ("--cb_explore_adf --bogus", "unrecognised option '--bogus'"),
    ("--cb_explore_adf --epsilon lots", "epsilon"),
    ("--oaa 3", "VW cannot run"),
    ("--cb_explore_adf -f /tmp/model.vw", "-f is not allowed"),
    ("--cb_explore_adf --data=/etc/passwd", "--data is not allowed"),
    ("--cb_explore_adf --readable_model out.txt", "--readable_model is not allowed"),
    ("   ", "empty"),
])
def test_refused_policies_say_why(arguments: str, problem: str) -> None:
    with pytest.raises(PolicyError, match=problem):
        check_policy(arguments)


def test_personalizer_exported_arguments_are_accepted_without_input_flags() -> None:
    exported = "--cb_explore_adf --epsilon 0.2 --dsjson --cb_type ips -l 0.5 --l1 1E-07 --power_t 0.5"
    assert check_policy(exported) == "--cb_explore_adf --epsilon 0.2 --cb_type ips -l 0.5 --l1 1E-07 --power_t 0.5"
    assert normalize("  --cb_explore_adf   --squarecb ") == "--cb_explore_adf --squarecb"


def test_a_bad_configured_policy_is_a_one_line_settings_error_not_a_traceback() -> None:
    with pytest.raises(SettingsError, match="learning_policy: VW cannot run .*--nope"):
        load_settings({"learning_policy": "--cb_explore_adf --nope"}, env={})
    with pytest.raises(PolicyError):
        check_policy_in_process("--cb_explore_adf --nope")
    done = CliRunner().invoke(cli, ["serve", "--port", "1"], env={"PERSONALIZE_LEARNING_POLICY": "--cb_explore_adf --nope"})
    assert done.exit_code == 2, done.output
    assert "learning_policy: VW cannot run" in done.output and "Traceback" not in done.output


def test_get_put_delete_policy(client: Any) -> None:
    default = {"name": "default", "arguments": DEFAULT_LEARNING_POLICY}
    assert client.get(f"{V1}/configurations/policy").json == default
    put = client.put("/personalizer/configurations/policy?api-version=2022-09-01-preview",
                     json={"name": "eps", "arguments": EPSILON + " --dsjson"})
    assert put.status_code == 200 and put.json == {"name": "eps", "arguments": EPSILON}
    assert client.get(f"{V1}/configurations/policy").json == {"name": "eps", "arguments": EPSILON}
    refused = client.put(f"{V1}/configurations/policy", json={"name": "x", "arguments": "--cb_explore_adf --nope"})
    assert refused.status_code == 422 and refused.json["error"]["target"] == "arguments"
    assert "--nope" in refused.json["error"]["message"]
    assert client.get(f"{V1}/configurations/policy").json["name"] == "eps"  # the refused one changed nothing
    for body, target in (({"arguments": EPSILON}, "name"), ({"name": "x"}, "arguments"),
                         ({"name": "x", "arguments": EPSILON, "extra": 1}, "extra"), ({"name": "x", "arguments": ""}, "arguments")):
        bad = client.put(f"{V1}/configurations/policy", json=body)
        assert bad.status_code == 400 and bad.json["error"]["target"] == target, bad.json
    reset = client.delete(f"{V1}/configurations/policy")
    assert reset.status_code == 200 and reset.json == default
    assert client.get(f"{V1}/configurations/policy").json == default


def test_a_new_policy_rebuilds_the_model_from_the_log_and_rankers_follow(make_app: Any, database_url: str, clock: Any) -> None:
    app = make_app(clock=clock, start=False, database_url=database_url, learner="inline")
    client = app.test_client()
    service = app.extensions["personalize"]
    for i in range(60):  # the user's kind pays
        kind = "abc"[i % 3]
        ranked = client.post(f"{V1}/rank", json={"contextFeatures": [{"user": {"kind": kind}}], "actions": ACTIONS}).json
        client.post(f"{V1}/events/{ranked['eventId']}/reward", json={"value": float(ranked["rewardActionId"] == kind)})
    with service.db.read() as session:
        learned = session.query(ModelSnapshot).order_by(ModelSnapshot.version.desc()).first().events_learned
    assert learned == 60
    version = service.ranker.version
    assert client.put(f"{V1}/configurations/policy", json={"name": "eps", "arguments": EPSILON}).status_code == 200
    assert service.ranker.vw_args != EPSILON.split() + ["--quiet"]  # nothing changes before the learner acts
    service.learner._policy_checked = float("-inf")  # the next step polls now (else within POLICY_POLL_SECONDS)
    service.learner.step()
    with service.db.read() as session:
        snapshot = session.query(ModelSnapshot).order_by(ModelSnapshot.version.desc()).first()
    assert snapshot.vw_args == EPSILON + " --quiet" and snapshot.events_learned == 60 and snapshot.version == version + 1
    assert service.ranker.vw_args == (EPSILON + " --quiet").split() and service.ranker.version == version + 1
    assert service.ranker.explorer.squarecb_actions == 0  # epsilon-greedy: no SquareCB scaling any more
    # a second server process (here: a second service on the database) serves the new model too
    other = make_app(start=False, database_url=database_url).extensions["personalize"]
    assert other.ranker.version == snapshot.version and other.ranker.vw_args == snapshot.vw_args.split()
    # and a restarted learner keeps it (same policy: no second rebuild)
    service.learner.stop()  # hands the lease over
    restarted = make_app(clock=clock, start=False, database_url=database_url, learner="inline").extensions["personalize"]
    restarted.learner.step()
    assert restarted.learner.version == snapshot.version
    # back to the default: rebuilt again
    client.delete(f"{V1}/configurations/policy")
    restarted.learner._policy_checked = float("-inf")
    restarted.learner.step()
    assert restarted.learner.vw_args == DEFAULT_LEARNING_POLICY + " --quiet"
    assert restarted.learner.version == snapshot.version + 1 and restarted.learner.events_learned == 60


def test_a_stored_policy_vw_refuses_later_falls_back_to_the_default(make_app: Any, clock: Any,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    """A policy is checked when stored, but a VW upgrade may refuse it later: start anyway, on the default."""
    from personalize.policy import Policy, store_policy

    app = make_app(clock=clock, start=False, learner="inline")
    service = app.extensions["personalize"]
    with service.db.write() as session:
        store_policy(session, Policy("old", "--cb_explore_adf --no_such_flag_any_more"))
    again = make_app(clock=clock, start=False, learner="inline").extensions["personalize"]
    assert again.ranker.vw_args == again.settings.vw_args
    service.learner.stop()
    again.learner.step()
    again.learner.step()
    assert again.learner.vw_args == " ".join(again.settings.vw_args)
    assert sum("cannot run" in r.message for r in caplog.records) == 2  # once by the ranker, once by the learner
