"""Settings: defaults < TOML file < environment < overrides; bad values are clear errors."""

from dataclasses import fields
from pathlib import Path

import pytest
from click.testing import CliRunner

from personalize.cli import cli
from personalize.config import Settings, SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[1]


def test_precedence(tmp_path: Path) -> None:
    config = tmp_path / "settings.toml"
    config.write_text('reward_wait_time = 30\nexploration = 0.1\nreward_aggregation = "sum"\n')
    env = {"PERSONALIZE_EXPLORATION": "0.2", "PERSONALIZE_ACTION_ID_FEATURE": "off"}
    settings = load_settings({"reward_aggregation": "earliest"}, env=env, config_file=config)
    assert (settings.reward_wait_time, settings.exploration, settings.reward_aggregation) == (30.0, 0.2, "earliest")
    assert settings.action_id_feature == "off"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PERSONALIZE_EXPLORATION": "2"}, "exploration"),
        ({"PERSONALIZE_REWARD_AGGREGATION": "max"}, "reward_aggregation"),
        ({"PERSONALIZE_MAX_ACTIONS": "many"}, "max_actions"),
        ({"PERSONALIZE_LEARNER": "sometimes"}, "learner"),
        ({"PERSONALIZE_DEFAULT_REWARD": "5"}, "default_reward"),
    ],
)
def test_bad_values_name_the_setting(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(env=env)


def test_unknown_key_in_file_is_an_error(tmp_path: Path) -> None:
    config = tmp_path / "settings.toml"
    config.write_text("reward_wait = 3\n")
    with pytest.raises(SettingsError, match="unknown setting 'reward_wait'"):
        load_settings(env={}, config_file=config)


def test_every_setting_is_in_the_readme_and_in_serve_help() -> None:
    readme = (ROOT / "README.md").read_text()
    help_text = CliRunner().invoke(cli, ["serve", "--help"]).output
    for f in fields(Settings):
        variable = f"PERSONALIZE_{f.name.upper()}"
        assert variable in help_text, variable
        assert variable in readme or f"{variable.rsplit('_', 1)[0]}_MIN" in readme, f"{variable} missing from the README table"
