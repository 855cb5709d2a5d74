"""The plugin contract: every hook documented and tested, hooks behave, the example plugin is found."""

from __future__ import annotations

import importlib.metadata
import inspect
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import click
import pytest
from click.testing import CliRunner

from personalize import hookspecs, plugins
from personalize.cli import cli
from personalize.generator import Generator
from personalize.hookspecs import hookimpl
from personalize.plugins import PluginError, generator_classes, get_plugin_manager

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "tests" / "example_plugin"


def _hookspecs() -> dict[str, Callable[..., Any]]:
    return {name: f for name, f in vars(hookspecs).items()
            if callable(f) and hasattr(f, "personalize_spec")}


def _heading(name: str, func: Callable[..., Any]) -> str:
    signature = inspect.signature(func)
    params = ", ".join(f"{p.name}: {p.annotation}" for p in signature.parameters.values())
    return f"### `{name}({params}) -> {signature.return_annotation}`"


@pytest.mark.parametrize("name", sorted(_hookspecs()))
def test_every_hook_is_documented_with_its_signature(name: str) -> None:
    docs = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    assert _heading(name, _hookspecs()[name]) in docs.splitlines(), f"docs/plugins.md needs: {_heading(name, _hookspecs()[name])}"


@pytest.mark.parametrize("name", sorted(_hookspecs()))
def test_every_hook_has_a_test(name: str) -> None:
    assert f"test_hook_{name}" in globals(), f"write test_hook_{name} in tests/test_plugins.py"


class _Plugin:
    """A throwaway plugin registered for one test."""

    def __init__(self, **hooks: Callable[..., Any]) -> None:
        for name, func in hooks.items():
            setattr(self, name, hookimpl(func))


def _registered(plugin: _Plugin) -> Any:
    pm = get_plugin_manager()

    class Registration:
        def __enter__(self) -> None:
            pm.register(plugin)

        def __exit__(self, *exc: Any) -> None:
            pm.unregister(plugin)

    return Registration()


def test_hook_register_generators() -> None:
    bundled = {"popular", "fresh", "item_knn", "user_knn", "als", "content", "hybrid", "serendipity"}
    assert bundled <= set(generator_classes())
    assert all(issubclass(cls, Generator) for cls in generator_classes().values())
    with _registered(_Plugin(register_generators=lambda: [dict])), pytest.raises(PluginError, match="not a Generator"):
        generator_classes()

    class Impostor(Generator):
        name = "popular"

        def fit(self, data: Any) -> None: ...

        def candidates(self, request: Any, n: int) -> list[Any]:
            return []

    with _registered(_Plugin(register_generators=lambda: [Impostor])), pytest.raises(PluginError, match="registered twice"):
        generator_classes()


def test_hook_register_commands() -> None:
    @click.command("hello")
    def hello() -> None:
        click.echo("hi from a plugin")

    group = click.Group("personalize")
    with _registered(_Plugin(register_commands=lambda cli: cli.add_command(hello))):
        plugins.register_commands(group)
    assert {"import", "train", "evaluate-generators", "hello"} <= set(group.commands)
    assert CliRunner().invoke(group, ["hello"]).output == "hi from a plugin\n"


def test_hook_enrich_context(make_app: Any) -> None:
    """A plugin's context features reach the bandit and the log; the client's names win, then the plugin pluggy
    calls first (the last registered: this one over the bundled time plugin); broken output fails loudly."""
    import json

    from sqlalchemy import select

    from personalize.enrichment import RankContext
    from personalize.models import Event

    seen: list[RankContext] = []

    def weather(context: RankContext) -> dict[str, Any]:
        seen.append(context)
        return {"weather": {"sky": "rain"}, "time": {"season": "winter"}, "user": {"tier": "plugin"}}

    app = make_app(start=False, clock=lambda: 1_767_389_400.0, enrich_context=True)
    client = app.test_client()
    body = {"actions": [{"id": "a"}, {"id": "b"}], "contextFeatures": [{"user": {"tier": "gold"}}], "userId": "u1", "eventId": "e"}
    with _registered(_Plugin(enrich_context=weather)):
        assert client.post("/personalizer/v1.0/rank", json=body, headers={"X-Test": "1"}).status_code == 201
    with app.extensions["personalize"].db.read() as session:
        context = json.loads(session.scalars(select(Event.example)).one())
    assert context["c_weather"] == {"sky": "rain"} and context["c_time"] == {"season": "winter"}
    assert context["c_user"] == {"tier": "gold"}
    assert seen[0].headers.get("x-test") == "1" and seen[0].user_id == "u1" and seen[0].time.timestamp() == 1_767_389_400.0
    assert seen[0].features == [{"user": {"tier": "gold"}}]
    for broken in (lambda context: "rain", lambda context: {"weather": {"_sky": "rain"}}):
        with _registered(_Plugin(enrich_context=broken)):
            response = client.post("/personalizer/v1.0/rank", json={"actions": [{"id": "a"}]})
        assert response.status_code == 500 and response.json["error"]["code"] == "InternalServerError"


def test_example_plugin_is_installed_and_used_without_changing_the_service(tmp_path: Path) -> None:
    found = [ep for ep in importlib.metadata.entry_points(group="personalize") if ep.value == "personalize_example"]
    assert found, f"install the example plugin first: python -m pip install {EXAMPLE.relative_to(ROOT)}"
    assert found[0].dist is not None and found[0].dist.name == "personalize-example"
    items = tmp_path / "items.csv"
    items.write_text("id,title\na,A\nb,B\n", encoding="utf-8")
    ratings = tmp_path / "ratings.csv"
    ratings.write_text("userId,itemId,value\nu,a,5\nv,a,4\nv,b,1\n", encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'p.db'}"
    for args in (["import", "items", str(items)], ["import", "interactions", str(ratings)]):
        assert CliRunner().invoke(cli, [*args, "--database-url", url]).exit_code == 0
    # A fresh process finds the plugin through its entry point alone.
    done = subprocess.run([sys.executable, "-m", "personalize", "--log-level", "WARNING", "train", "--generator", "top_rated",
                           "--database-url", url], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "top_rated" in done.stdout
