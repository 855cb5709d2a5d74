from pathlib import Path

import pytest

from simulator.config import ConfigError, config_table, load_config

DOCS = Path(__file__).parents[2] / "docs" / "simulator.md"


def test_defaults_are_the_movielens_world() -> None:
    config = load_config()
    assert config.items.source == "movielens" and config.users.source == "movielens"
    assert config.run.actions == 50


def test_toml_overrides_sections(tmp_path: Path) -> None:
    path = tmp_path / "world.toml"
    path.write_text('seed = 9\n[choice]\nmodel = "cascade"\n[service]\nexploration = 0.1\n')
    config = load_config(path)
    assert (config.seed, config.choice.model, config.service["exploration"]) == (9, "cascade", 0.1)
    assert config.choice.slate_size == 5


@pytest.mark.parametrize("text, message", [
    ("[choice]\nmodle = 1\n", r"unknown setting \[choice\] modle"),
    ("[choice]\nmodel = \"logit\"\n", "choice.model"),
    ("colour = 1\n", "unknown key 'colour'"),
    ("[run]\npolicies = [\"magic\"]\n", "unknown policies"),
    ("[items]\ngenre_weights = \"log\"\n", "items.genre_weights"),
])
def test_bad_settings_name_the_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_every_knob_is_documented_with_its_default() -> None:
    docs = DOCS.read_text()
    for line in config_table().splitlines()[2:]:
        knob = line.split("|")[1].strip()
        assert line in docs, f"docs/simulator.md lacks the row of {knob} as config_table() prints it (name, default, help)"
