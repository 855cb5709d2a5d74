"""Per-slot off-policy evaluation of multi-slot policies (personalize/evaluation/slots.py, evaluate --multislot)."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from click.testing import CliRunner

from personalize.cli import cli
from personalize.config import load_settings
from personalize.evaluation.commands import store_lines
from personalize.evaluation.slots import ONLINE, evaluate_slots, parse_ccb_dsjson, replay_slots

ACTIONS = [{"id": a, "features": [{"item": {"kind": a}}]} for a in ("news", "sports", "film", "music", "games")]
SLOTS = [{"id": "hero", "baselineAction": "news"}, {"id": "side", "baselineAction": "sports"},
         {"id": "foot", "baselineAction": "film", "excludedActions": ["games"]}]
SEGMENTS = ["a", "b"]
BEST = {"a": ("games", "music", "news"), "b": ("film", "news", "sports")}


def logged_store(make_app: Any, clock: Any, rounds: int = 500) -> Any:
    """A store of uniformly explored multi-slot events (exploration 1.0) on a problem with a best action per slot."""
    app = make_app(clock=clock, start=False, exploration=1.0, learner="inline", reward_wait_time=5)
    client, rng = app.test_client(), random.Random(0)
    for i in range(rounds):
        segment = rng.choice(SEGMENTS)
        out = client.post("/personalizer/v1.0/multislot/rank", json={
            "contextFeatures": [{"user": {"s": segment}}], "actions": ACTIONS, "slots": SLOTS}).json
        rewards = [{"slotId": s["id"], "value": float(s["rewardActionId"] == best)} for s, best in zip(out["slots"], BEST[segment])]
        client.post(f"/personalizer/v1.0/multislot/events/{out['eventId']}/reward", json={"reward": rewards})
        clock.advance(1)
    return app.extensions["personalize"]


def test_store_lines_parse_into_per_slot_outcomes(make_app: Any, clock: Any) -> None:
    service = logged_store(make_app, clock, rounds=20)
    events = list(parse_ccb_dsjson(store_lines(service.settings, None, None, multislot=True)))
    assert len(events) == 20
    assert all(e.slot_ids == ["hero", "side", "foot"] for e in events)
    # uniform logging: each slot drew among what it allowed and the slots before it left
    for e in events:
        foot = [a for a in range(5) if a != 4 and a not in e.chosen[:2]]  # foot excludes games (4)
        assert e.probability == pytest.approx([1 / 5, 1 / 4, 1 / len(foot)])


def test_replay_pins_the_earlier_slots_to_the_logged_actions(make_app: Any, clock: Any) -> None:
    service = logged_store(make_app, clock, rounds=5)
    events = list(parse_ccb_dsjson(store_lines(service.settings, None, None, multislot=True)))
    first = replay_slots(events[:1], service.settings.multislot_vw_args)[0]  # an untrained policy is uniform
    allowed_foot = [a for a in range(5) if a != 4 and a not in events[0].chosen[:2]]
    assert first == pytest.approx([1 / 5, 1 / 4, 1 / len(allowed_foot)], rel=1e-6)


def test_a_learning_policy_is_estimated_above_the_uniform_logging_policy(make_app: Any, clock: Any) -> None:
    service = logged_store(make_app, clock)
    events = list(parse_ccb_dsjson(store_lines(service.settings, None, None, multislot=True)))
    rows = evaluate_slots(events, [load_settings({}, env={}).multislot_learning_policy], reps=50,
                          settings=load_settings({}, env={}))
    online = {r.slot: r.estimates["mean reward"] for r in rows if r.policy == ONLINE}
    target = {r.slot: r.estimates for r in rows if r.policy != ONLINE}
    assert list(online) == ["hero", "side", "foot"]
    for slot in online:
        assert online[slot] < 0.35  # about 1 / (actions left) when logged uniformly
        assert target[slot]["snips"] > online[slot] + 0.3, (slot, target[slot], online[slot])


def test_evaluate_multislot_command(make_app: Any, clock: Any, tmp_path: Any) -> None:
    service = logged_store(make_app, clock, rounds=60)
    url = service.settings.resolved_database_url
    result = CliRunner().invoke(cli, ["evaluate", "--multislot", "--policy", "--ccb_explore_adf --epsilon 0.1 -q ca",
                                      "--bootstrap", "20", "--json", "--database-url", url])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert {(r["policy"], r["slot"]) for r in rows} == {(p, s) for p in (ONLINE, "--ccb_explore_adf --epsilon 0.1 -q ca")
                                                         for s in ("hero", "side", "foot")}
    exported = tmp_path / "ms.dsjson"
    assert CliRunner().invoke(cli, ["logs", "export", "--multislot", "-o", str(exported), "--database-url", url]).exit_code == 0
    table = CliRunner().invoke(cli, ["evaluate", "--multislot", "--logs", str(exported), "--bootstrap", "20",
                                     "--policy", "--ccb_explore_adf --squarecb -q ca"])
    assert table.exit_code == 0, table.output
    assert "snips" in table.stdout and "hero" in table.stdout
    bad = CliRunner().invoke(cli, ["evaluate", "--multislot", "--policy", "--ccb_explore_adf --nope", "--database-url", url])
    assert bad.exit_code == 2 and "Traceback" not in bad.output


def test_a_line_vw_would_crash_on_is_refused_in_one_line(make_app: Any, clock: Any, tmp_path: Any) -> None:
    service = logged_store(make_app, clock, rounds=3)
    text = next(iter(store_lines(service.settings, None, None, multislot=True)))
    line = json.loads(text)
    line["_outcomes"][1]["_a"] = [line["_outcomes"][0]["_a"][0]]  # slot 2 takes slot 1's action
    bad = tmp_path / "bad.dsjson"
    bad.write_text(json.dumps(line) + "\n")
    result = CliRunner().invoke(cli, ["evaluate", "--multislot", "--logs", str(bad), "--policy", "--ccb_explore_adf"])
    assert result.exit_code == 1 and "line 1" in result.output and "Traceback" not in result.output
    original = json.loads(text)
    reordered = {"_outcomes": original["_outcomes"], **{k: v for k, v in original.items() if k != "_outcomes"}}
    ok = tmp_path / "reordered.dsjson"  # _outcomes before c: VW would crash on the raw line; it is rewritten
    ok.write_text(json.dumps(reordered) + "\n")
    events = list(parse_ccb_dsjson(ok.read_text().splitlines()))
    assert len(events) == 1 and list(json.loads(events[0].line)) == ["c", "_outcomes"]
    assert replay_slots(events, service.settings.multislot_vw_args)
