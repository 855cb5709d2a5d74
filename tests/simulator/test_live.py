from pathlib import Path

from simulator.runner import run


def test_runner_drives_a_live_server(small_config, live_server: str, tmp_path: Path) -> None:
    config = small_config.with_overrides(run={"policies": ["uniform", "default", "oracle"]})
    result = run(config, 30, tmp_path, url=live_server)
    assert set(result.summaries) == {"uniform", "default", "oracle"}
    assert 0.0 <= result.summaries["default"]["value"] <= 1.0
    assert result.service_events_per_second["default"] > 0
