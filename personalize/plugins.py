"""The plugin manager: bundled default plugins, then the ``personalize`` entry-point group.

Every ``pm.hook.*`` call goes through a typed function here (tox's pattern), so callers get
checked results instead of pluggy's raw lists.
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from typing import Any, Sequence

import pluggy

from personalize import hookspecs
from personalize.config import Settings
from personalize.generator import Generator

__all__ = [
    "DEFAULT_PLUGINS", "PluginError", "UnknownGeneratorError", "UntrainedGeneratorError", "default_generators",
    "get_plugin_manager", "register_commands", "generator_classes", "make_generator", "context_features",
]

#: Bundled plugins, registered exactly like third-party ones (Datasette's default_* pattern).
DEFAULT_PLUGINS: tuple[str, ...] = (
    "plugins.popular",
    "plugins.fresh",
    "plugins.item_knn",
    "plugins.user_knn",
    "plugins.als",
    "plugins.svd",
    "plugins.item2vec",
    "plugins.content",
    "plugins.hybrid",
    "plugins.embedding",
    "plugins.text_embedding",
    "plugins.serendipity",
    "plugins.time_context",
    "plugins.device_context",
    "plugins.catalog_commands",
    "simulator.commands",
    "personalize.evaluation.commands",
)


class PluginError(RuntimeError):
    """A plugin broke the contract (wrong type, duplicate name); the message names the plugin."""


class UnknownGeneratorError(ValueError):
    """A generator name that no plugin registers."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"unknown generator {name!r}; known generators: {', '.join(known)}")
        self.name = name
        self.known = known


class UntrainedGeneratorError(UnknownGeneratorError):
    """A registered generator that is fitted only when named (``fit_by_default`` False) and has no stored model yet."""

    def __init__(self, name: str, known: list[str]) -> None:
        ValueError.__init__(self, f"generator {name!r} has no trained model: it is trained only when named "
                                  f"(personalize train --generator {name}, POST /generators/train with "
                                  f'{{"generators": ["{name}"]}}, or the generators setting); trained generators: '
                                  f"{', '.join(known)}")
        self.name = name
        self.known = known


@lru_cache(maxsize=1)
def get_plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("personalize")
    pm.add_hookspecs(hookspecs)
    for name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(name), name=name)
    pm.load_setuptools_entrypoints("personalize")
    pm.check_pending()
    return pm


def register_commands(cli: Any) -> None:
    """Let every plugin add its commands to the CLI."""
    get_plugin_manager().hook.register_commands(cli=cli)


def generator_classes() -> dict[str, type[Generator]]:
    """Every registered generator class by name, sorted by name; a name registered twice is an error."""
    pm = get_plugin_manager()
    classes: dict[str, type[Generator]] = {}
    for registered in pm.hook.register_generators():
        for cls in registered:
            if not (isinstance(cls, type) and issubclass(cls, Generator)) or not isinstance(getattr(cls, "name", None), str):
                raise PluginError(f"a plugin registered {cls!r}, which is not a Generator subclass with a name")
            if cls.name in classes and classes[cls.name] is not cls:
                other = classes[cls.name]
                raise PluginError(
                    f"generator name {cls.name!r} is registered twice: by {cls.__module__} and {other.__module__}"
                )
            classes[cls.name] = cls
    return dict(sorted(classes.items()))


def default_generators(configured: Sequence[str] = ()) -> list[str]:
    """The generators fitted when none is named: every registered one with ``fit_by_default``, and ``configured`` ones."""
    return [name for name, cls in generator_classes().items() if cls.fit_by_default or name in configured]


def make_generator(name: str, settings: Settings | None = None) -> Generator:
    """A new, unfitted generator with its default config, or the config ``settings`` give it (``from_settings``)."""
    classes = generator_classes()
    if name not in classes:
        raise UnknownGeneratorError(name, list(classes))
    return classes[name]() if settings is None else classes[name].from_settings(settings)


def context_features(context: Any) -> list[dict[str, Any]]:
    """Every context plugin's feature object for one Rank (``enrich_context``), first-registered last, as pluggy
    orders them; a result that is not a JSON object is a plugin bug, reported with the plugin's module."""
    results = get_plugin_manager().hook.enrich_context(context=context)
    for result in results:
        if not isinstance(result, dict):
            raise PluginError(f"an enrich_context hook returned {type(result).__name__}, not a feature object (dict) or None")
    return results
