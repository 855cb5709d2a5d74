"""The multi-slot homepage scenario (simulator/homepage.py, `personalize simulate homepage`)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from personalize.cli import cli
from simulator.homepage import Homepage, run_homepage, write_homepage


def test_position_bias_makes_the_hero_worth_more() -> None:
    page = Homepage()
    for article in page.articles:
        assert page.click_rate("fan", "desktop", 0, article) >= page.click_rate("fan", "desktop", 1, article)


def test_every_policy_meets_the_same_visits_and_the_service_learns(tmp_path: Path) -> None:
    result = run_homepage(events=600, window=100, seed=1, out=tmp_path)
    assert set(result.curves) == {"service", "baseline", "uniform", "oracle"}
    assert all(len(rows) == 6 for rows in result.curves.values())
    summary = result.summaries
    assert summary["oracle"]["clicks_per_visit"] >= max(s["clicks_per_visit"] for s in summary.values()) - 0.05
    assert summary["service"]["final_clicks_per_visit"] > summary["uniform"]["final_clicks_per_visit"]
    written = write_homepage(result, tmp_path)
    assert [p.name for p in written] == ["homepage.json", "homepage.png"] and all(p.stat().st_size > 0 for p in written)
    assert json.loads(written[0].read_text())["policies"]["service"]["clicks_per_visit"] == summary["service"]["clicks_per_visit"]


def test_simulate_homepage_command(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["simulate", "homepage", "--events", "200", "--window", "100", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "oracle" in result.stdout and (tmp_path / "homepage.png").exists()
    bad = CliRunner().invoke(cli, ["simulate", "homepage", "--events", "10", "--window", "100"])
    assert bad.exit_code == 2 and "Traceback" not in bad.output


def test_apprentice_then_online_answers_the_baseline_page_until_the_switch(tmp_path: Path) -> None:
    """The apprentice policy: Apprentice mode (each slot's baselineAction, p = 1) for 200 visits, then Online
    through the stored service configuration, as an operator would switch it."""
    import sqlite3

    result = run_homepage(events=400, window=100, seed=2, out=tmp_path, policies=("baseline", "apprentice"),
                          apprentice_until=200)
    assert set(result.curves) == {"baseline", "apprentice"} and result.as_json()["apprenticeUntil"] == 200
    with sqlite3.connect(tmp_path / "services" / "homepage-apprentice.db") as db:
        rows = db.execute("SELECT learning_mode, probability, slots FROM events ORDER BY seq").fetchall()
    assert len(rows) == 400
    baselines = [s["baselineAction"] for s in Homepage().slots]
    articles = list(Homepage().articles)
    for mode, probability, slots in rows[:200]:
        chosen = [articles[slot["ranking"][0]] for slot in json.loads(slots)]
        assert mode == "Apprentice" and probability == 1.0 and chosen == baselines
    assert all(mode is None for mode, _, _ in rows[200:])  # Online (stored as NULL)
    assert any(probability < 1.0 for _, probability, _ in rows[200:])  # it explores again
    written = write_homepage(result, tmp_path)
    assert json.loads(written[0].read_text())["apprenticeUntil"] == 200


def test_simulate_homepage_apprentice_until_must_fit_the_events(tmp_path: Path) -> None:
    bad = CliRunner().invoke(cli, ["simulate", "homepage", "--events", "200", "--window", "100",
                                   "--apprentice-until", "300", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "--apprentice-until" in bad.output and "Traceback" not in bad.output
