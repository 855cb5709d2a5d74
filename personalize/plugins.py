"""The plugin manager: bundled default plugins, then the ``personalize`` entry-point group."""

from __future__ import annotations

import importlib
from functools import lru_cache
from typing import Any

import pluggy

from personalize import hookspecs

__all__ = ["DEFAULT_PLUGINS", "get_plugin_manager", "register_commands"]

#: Bundled plugins, registered exactly like third-party ones (Datasette's default_* pattern).
DEFAULT_PLUGINS: tuple[str, ...] = ()


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
