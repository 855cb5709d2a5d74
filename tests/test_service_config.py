"""The service configuration (personalize/service_config.py): ISO 8601 durations, validation naming the field,
storage that wins over the settings, and live application in this process and in others."""

from __future__ import annotations

import time
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings, strategies as st

from personalize.cli import cli
from personalize.service_config import DURATION_PATTERN, MAX_DURATION_SECONDS, format_duration, parse_duration
from personalize.api.errors import ApiError

PREFIX = "/personalizer"
CONFIG_URL = f"{PREFIX}/configurations/service?api-version=2022-09-01-preview"
ACTIONS = [{"id": a, "features": [{"item": {"kind": a}}]} for a in ("news", "sports", "science")]
BODY = {"rewardWaitTime": "PT10M", "defaultReward": 0, "rewardAggregation": "earliest", "explorationPercentage": 0.2,
        "modelExportFrequency": "PT5M", "logRetentionDays": 7, "learningMode": "Online",
        "isAutoOptimizationEnabled": True, "autoOptimizationFrequency": "P7D",
        "autoOptimizationStartDate": "2019-01-19T00:00:00Z", "modelRetrainDays": 0}  # Personalizer's own example


# -- durations ----------------------------------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=int(MAX_DURATION_SECONDS * 1e6)))
def test_a_duration_survives_formatting_and_parsing(microseconds: int) -> None:
    seconds = microseconds / 1e6
    text = format_duration(seconds)
    assert text.startswith("P")
    assert round(parse_duration(text, "f") * 1e6) == microseconds
    assert format_duration(parse_duration(text, "f")) == text  # the text is canonical


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 400), st.integers(0, 23), st.integers(0, 59), st.integers(0, 59))
def test_iso_components_add_up(days: int, hours: int, minutes: int, seconds: int) -> None:
    text = f"P{days}DT{hours}H{minutes}M{seconds}S"
    assert parse_duration(text, "f") == days * 86400 + hours * 3600 + minutes * 60 + seconds


@settings(max_examples=300, deadline=None)
@given(st.from_regex(DURATION_PATTERN, fullmatch=True))
def test_every_duration_of_the_pattern_is_accepted_and_formats_back_to_the_pattern(text: str) -> None:
    seconds = parse_duration(text, "f")
    assert 0 <= seconds <= MAX_DURATION_SECONDS
    assert parse_duration(format_duration(seconds), "f") == seconds  # a GET body can be sent back


@pytest.mark.parametrize("text, seconds", [("PT24H", 86400), ("PT90M", 5400), ("P1DT12H", 129600), ("PT0.25S", 0.25),
                                           ("P0D", 0), ("PT0S", 0)])
def test_usual_durations(text: str, seconds: float) -> None:
    assert parse_duration(text, "f") == seconds


@pytest.mark.parametrize("text", ["10 minutes", "PT", "P", "", "P1M", "P1Y", "P1W", "-PT5M", "PT10X", "P40000D", "P1DT",
                                  "PT1.1234567S", "pt10m", 600, None])
def test_a_bad_duration_is_a_400_naming_the_field(text: Any) -> None:
    with pytest.raises(ApiError) as excinfo:
        parse_duration(text, "rewardWaitTime")
    assert excinfo.value.status == 400
    assert excinfo.value.target == "rewardWaitTime"
    assert "rewardWaitTime" in excinfo.value.message


# -- the API on the test client ------------------------------------------------------------------
def test_defaults_come_from_the_settings(make_app: Any) -> None:
    client = make_app(start=False, reward_wait_time=90, exploration=0.05, learning_mode="Apprentice",
                      default_reward=-0.5, reward_aggregation="sum").test_client()
    body = client.get(CONFIG_URL).json
    assert body["rewardWaitTime"] == "PT1M30S"
    assert body["explorationPercentage"] == 0.05
    assert body["learningMode"] == "Apprentice"
    assert body["defaultReward"] == -0.5 and body["rewardAggregation"] == "sum"
    assert "lastConfigurationEditDate" not in body  # never edited


def test_put_stores_personalizers_example_and_get_returns_it(make_app: Any, database_url: str) -> None:
    client = make_app(start=False, database_url=database_url).test_client()
    put = client.put(CONFIG_URL, json=BODY)
    assert put.status_code == 200, put.json
    got = client.get(f"{PREFIX}/v1.0/configurations/service").json
    assert got == put.json
    for key, value in BODY.items():
        assert got[key] == value, key
    assert got["lastConfigurationEditDate"].endswith("Z")
    # a GET body sent back unchanged (read-only fields included) is accepted as it is
    again = client.put(CONFIG_URL, json=got)
    assert again.status_code == 200 and {k: v for k, v in again.json.items() if k != "lastConfigurationEditDate"} == \
        {k: v for k, v in got.items() if k != "lastConfigurationEditDate"}


def test_fields_left_out_keep_their_values(make_app: Any) -> None:
    client = make_app(start=False).test_client()
    client.put(CONFIG_URL, json={**BODY, "learningMode": "Apprentice"})
    body = {k: v for k, v in BODY.items() if k not in ("learningMode", "isAutoOptimizationEnabled",
                                                        "autoOptimizationFrequency", "autoOptimizationStartDate")}
    got = client.put(CONFIG_URL, json=body).json
    assert got["learningMode"] == "Apprentice"
    assert got["isAutoOptimizationEnabled"] is True and got["autoOptimizationFrequency"] == "P7D"


@pytest.mark.parametrize("change, field", [
    ({"rewardWaitTime": "10 minutes"}, "rewardWaitTime"),
    ({"rewardWaitTime": "P1M"}, "rewardWaitTime"),
    ({"modelExportFrequency": "soon"}, "modelExportFrequency"),
    ({"defaultReward": 2}, "defaultReward"),
    ({"defaultReward": "0"}, "defaultReward"),
    ({"rewardAggregation": "average"}, "rewardAggregation"),
    ({"explorationPercentage": 1.5}, "explorationPercentage"),
    ({"explorationPercentage": -0.1}, "explorationPercentage"),
    ({"logRetentionDays": 0}, "logRetentionDays"),  # less than the wait (10 minutes) plus a day
    ({"logRetentionDays": -2}, "logRetentionDays"),
    ({"modelRetrainDays": 8}, "modelRetrainDays"),  # more than logRetentionDays (7)
    ({"modelRetrainDays": -1}, "modelRetrainDays"),
    ({"learningMode": "Offline"}, "learningMode"),
    ({"isAutoOptimizationEnabled": "yes"}, "isAutoOptimizationEnabled"),
    ({"autoOptimizationStartDate": "next week"}, "autoOptimizationStartDate"),
    ({"logMirrorEnabled": True}, "logMirrorEnabled"),
    ({"logMirrorSasUri": "https://x.blob.core.windows.net/c?sig=s"}, "logMirrorSasUri"),
    ({"rewardWaitTme": "PT1M"}, "rewardWaitTme"),
    ({"rewardWaitTime": None}, "rewardWaitTime"),
])
def test_invalid_values_are_a_400_naming_the_field_and_change_nothing(make_app: Any, change: dict[str, Any], field: str) -> None:
    client = make_app(start=False).test_client()
    before = client.get(CONFIG_URL).json
    answer = client.put(CONFIG_URL, json={**BODY, **change})
    assert answer.status_code == 400, answer.json
    error = answer.json["error"]
    assert error["target"] == field
    assert field in error["message"]
    assert client.get(CONFIG_URL).json == before


@pytest.mark.parametrize("missing", ["rewardWaitTime", "defaultReward", "rewardAggregation", "explorationPercentage",
                                     "modelExportFrequency", "logRetentionDays", "modelRetrainDays"])
def test_required_fields_as_in_personalizers_spec(make_app: Any, missing: str) -> None:
    client = make_app(start=False).test_client()
    answer = client.put(CONFIG_URL, json={k: v for k, v in BODY.items() if k != missing})
    assert answer.status_code == 400 and answer.json["error"]["target"] == missing


def test_a_change_applies_to_the_next_rank_and_the_next_join(make_app: Any, clock: Any) -> None:
    app = make_app(clock=clock, start=False, learner="inline", exploration=0.0)
    client = app.test_client()
    service = app.extensions["personalize"]
    client.put(CONFIG_URL, json={**BODY, "explorationPercentage": 1.0, "rewardWaitTime": "PT30S", "defaultReward": -0.25,
                                 "logRetentionDays": -1})
    ranked = client.post(f"{PREFIX}/v1.0/rank", json={"actions": ACTIONS, "eventId": "e1"}).json
    assert [a["probability"] for a in ranked["ranking"]] == pytest.approx([1 / 3] * 3)  # exploration 1: uniform
    with service.db.read() as session:
        from personalize.models import Event
        event = session.query(Event).filter_by(event_id="e1").one()
        assert event.wait_until == pytest.approx(clock.now + 30)
    clock.advance(31)
    client.post(f"{PREFIX}/v1.0/rank", json={"actions": ACTIONS, "eventId": "e2"})  # any call; the learner steps on rewards
    service.learner.step()
    with service.db.read() as session:
        assert session.query(Event).filter_by(event_id="e1").one().learned_reward == -0.25  # the new default reward


def test_the_stored_configuration_wins_over_the_settings_after_a_restart(make_app: Any, tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    first = make_app(start=False, database_url=url, exploration=0.02)
    first.test_client().put(CONFIG_URL, json={**BODY, "explorationPercentage": 0.3})
    first.extensions["personalize"].close()
    second = make_app(start=False, database_url=url, exploration=0.02)
    assert second.test_client().get(CONFIG_URL).json["explorationPercentage"] == 0.3
    assert second.extensions["personalize"].ranker.explorer.exploration == 0.3


def test_another_process_sees_a_change_within_the_poll_interval(make_app: Any, database_url: str) -> None:
    one = make_app(database_url=database_url, config_poll_interval=0.05)
    two = make_app(database_url=database_url, config_poll_interval=0.05)
    one.test_client().put(CONFIG_URL, json={**BODY, "explorationPercentage": 0.4, "learningMode": "LoggingOnly"})
    service = two.extensions["personalize"]
    deadline = time.time() + 5
    while service.live.current.learning_mode != "LoggingOnly" and time.time() < deadline:
        time.sleep(0.02)
    assert service.live.current.learning_mode == "LoggingOnly"
    assert service.ranker.explorer.exploration == 0.4
    assert two.test_client().get(f"{PREFIX}/v1.0/status").json["settings"]["learningMode"] == "LoggingOnly"


# -- CLI --------------------------------------------------------------------------------------------
def test_cli_config_get_and_set(tmp_path: Any) -> None:
    env = {"PERSONALIZE_DATA_DIR": str(tmp_path)}
    runner = CliRunner()
    assert runner.invoke(cli, ["db", "upgrade"], env=env).exit_code == 0
    got = runner.invoke(cli, ["config", "get"], env=env)
    assert got.exit_code == 0 and '"learningMode": "Online"' in got.output
    done = runner.invoke(cli, ["config", "set", "learningMode=Apprentice", "rewardWaitTime=PT2M",
                               "explorationPercentage=0.1"], env=env)
    assert done.exit_code == 0, done.output
    got = runner.invoke(cli, ["config", "get"], env=env).output
    assert '"learningMode": "Apprentice"' in got and '"rewardWaitTime": "PT2M"' in got and '"explorationPercentage": 0.1' in got
    status = runner.invoke(cli, ["status"], env=env).output
    assert '"learningMode": "Apprentice"' in status
    for args, words in ((["learningMode=Offline"], "learningMode"), (["rewardWaitTime=soon"], "rewardWaitTime"),
                        (["nonsense"], "FIELD=VALUE"), (["colour=red"], "colour")):
        refused = runner.invoke(cli, ["config", "set", *args], env=env)
        assert refused.exit_code != 0
        assert words in refused.output and "Traceback" not in refused.output
        assert len(refused.output.strip().splitlines()) == 1  # one line


def test_a_learner_process_of_its_own_applies_a_change(make_app: Any, make_settings: Any, database_url: str) -> None:
    """`personalize learn` runs a Learner with its own configuration watcher: a PUT elsewhere reaches its joins."""
    from personalize.db import Database
    from personalize.learner import Learner
    from personalize.models import Event

    app = make_app(database_url=database_url, learner="off")
    client = app.test_client()
    settings = make_settings(database_url=database_url, config_poll_interval=0.05, learner_interval=0.01)
    db = Database.for_settings(settings)
    learner = Learner(settings, db)
    learner.start()
    try:
        client.put(CONFIG_URL, json={**BODY, "rewardWaitTime": "PT0.2S", "defaultReward": -0.5, "logRetentionDays": -1})
        deadline = time.time() + 5
        while learner.live.current.default_reward != -0.5 and time.time() < deadline:
            time.sleep(0.02)
        client.post(f"{PREFIX}/v1.0/rank", json={"actions": ACTIONS, "eventId": "own"})
        deadline = time.time() + 10
        reward = None
        while reward is None and time.time() < deadline:
            with app.extensions["personalize"].db.read() as session:
                reward = session.query(Event).filter_by(event_id="own").one().learned_reward
            time.sleep(0.05)
        assert reward == -0.5  # no reward within the new 0.2 s wait: the new default reward
    finally:
        learner.stop()
        db.dispose()
