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
