"""Exported DSJSON trains a fresh VW into the same model the service learned online."""

import json
from pathlib import Path
from typing import Any

import vowpal_wabbit_next as vw
from click.testing import CliRunner

from personalize.cli import cli
from personalize.features import ACTION_INDEX, CONTEXT_INDEX, build_context, feature_namespaces

ACTIONS = [{"id": a, "features": [{"item": {"kind": a, "price": i}}]} for i, a in enumerate("abcdef")]
SEGMENTS = ["x", "y", "z"]


def test_export_replays_to_the_same_predictions(make_app: Any, clock: Any, tmp_path: Path) -> None:
    app = make_app(clock=clock, start=False, reward_aggregation="sum", reward_wait_time=5)
    client, service = app.test_client(), app.extensions["personalize"]
    for i in range(150):
        segment = SEGMENTS[i % 3]
        out = client.post("/personalizer/v1.0/rank", json={"contextFeatures": [{"user": {"seg": segment}}], "actions": ACTIONS}).json
        if i % 4:
            value = 1.0 if out["rewardActionId"] == "abcdef"[i % 3] else -0.5
            client.post(f"/personalizer/v1.0/events/{out['eventId']}/reward", json={"value": value})
        clock.advance(1.0)
        if i % 25 == 0:
            service.learner.step()
    clock.advance(10)
    service.learner.step()

    out_file = tmp_path / "events.dsjson"
    result = CliRunner().invoke(cli, ["logs", "export", "--format", "dsjson", "--output", str(out_file), "--database-url", service.settings.resolved_database_url])
    assert result.exit_code == 0, result.output
    lines = out_file.read_text().splitlines()
    assert len(lines) == 150
    first = json.loads(lines[0])
    for key in ("_label_cost", "_label_probability", "_label_Action", "_labelIndex", "a", "c", "p", "EventId", "Timestamp", "VWState"):
        assert key in first
    assert "_multi" in first["c"]

    replay = vw.Workspace(service.settings.vw_args)
    parser = vw.DSJsonFormatParser(replay)
    for line in lines:
        replay.learn_one(parser.parse_json(line))

    online = vw.Workspace(["--quiet"], model_data=service.learner._model.serialize())
    for segment in SEGMENTS:
        context = build_context(feature_namespaces([{"user": {"seg": segment}}], "c", CONTEXT_INDEX),
                                [(a["id"], feature_namespaces(a["features"], "a", ACTION_INDEX)) for a in ACTIONS],
                                service.settings.action_id_feature)
        line = '{"c":' + context + "}"
        assert replay.predict_one(parser.parse_json(line)) == online.predict_one(vw.DSJsonFormatParser(online).parse_json(line))


def test_timestamps_match_datetime_formatting() -> None:
    """dsjson._iso's arithmetic gives exactly what datetime gives (milliseconds truncated after
    half-even rounding to microseconds), also where that rounding carries into the next second."""
    import random
    from datetime import datetime, timezone

    from personalize.dsjson import _iso

    rng = random.Random(0)
    values = [0.0, 0.9999995, 0.9999994999, 1_700_000_000.9999995, 1_700_000_000.0005, 86_399.9999996]
    values += [rng.randint(0, 4_000_000_000) + rng.choice([0.9999995, 0.0000005, 0.9995, rng.random()]) for _ in range(20_000)]
    for ts in values:
        assert _iso(ts) == datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z", ts


MULTI_ACTIONS = [{"id": a, "features": [{"item": {"kind": a}}]} for a in "abcdef"]
MULTI_SLOTS = [{"id": "hero", "features": [{"size": "large"}], "baselineAction": "a"},
               {"id": "side", "features": [{"size": "small"}], "excludedActions": ["a"], "baselineAction": "b"},
               {"id": "foot", "baselineAction": "c"}]


def test_multislot_export_replays_to_the_same_predictions(make_app: Any, clock: Any, tmp_path: Path) -> None:
    app = make_app(clock=clock, start=False, reward_aggregation="sum", reward_wait_time=5)
    client, service = app.test_client(), app.extensions["personalize"]
    for i in range(120):
        segment = SEGMENTS[i % 3]
        out = client.post("/personalizer/v1.0/multislot/rank", json={
            "contextFeatures": [{"user": {"seg": segment}}], "actions": MULTI_ACTIONS, "slots": MULTI_SLOTS}).json
        rewards = [{"slotId": s["id"], "value": 1.0 if s["rewardActionId"] == "abcdef"[(i + k) % 6] else -0.5}
                   for k, s in enumerate(out["slots"]) if (i + k) % 4]
        if rewards:
            client.post(f"/personalizer/v1.0/multislot/events/{out['eventId']}/reward", json={"reward": rewards})
        client.post("/personalizer/v1.0/rank", json={"actions": ACTIONS})  # single-slot events stay out of the export
        clock.advance(1.0)
        if i % 25 == 0:
            service.learner.step()
    clock.advance(10)
    service.learner.step()

    out_file = tmp_path / "multislot.dsjson"
    result = CliRunner().invoke(cli, ["logs", "export", "--multislot", "--output", str(out_file),
                                      "--database-url", service.settings.resolved_database_url])
    assert result.exit_code == 0, result.output
    lines = out_file.read_text().splitlines()
    assert len(lines) == 120
    first = json.loads(lines[0])
    assert list(first) == ["Timestamp", "Version", "EventId", "c", "_outcomes", "VWState"]
    assert [s["_id"] for s in first["c"]["_slots"]] == ["hero", "side", "foot"]
    assert all(set(o) == {"_id", "_label_cost", "_a", "_p"} for o in first["_outcomes"])

    replay = vw.Workspace(service.settings.multislot_vw_args)
    parser = vw.DSJsonFormatParser(replay)
    for line in lines:
        replay.learn_one(parser.parse_json(line))
    online = vw.Workspace(["--quiet"], model_data=service.learner._slot_model.serialize())
    for segment in SEGMENTS:
        line = json.dumps({"c": {**first["c"], "c_user": {"seg": segment}}})
        assert replay.predict_one(parser.parse_json(line)) == online.predict_one(vw.DSJsonFormatParser(online).parse_json(line))
    # and the single-slot export is unchanged by the multi-slot events
    single = CliRunner().invoke(cli, ["logs", "export", "--database-url", service.settings.resolved_database_url])
    assert single.exit_code == 0 and len(single.stdout.splitlines()) == 120
