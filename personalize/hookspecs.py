"""The plugin contract: every hook a personalize plugin may implement (pluggy markers "personalize")."""

from __future__ import annotations

from typing import Any

import pluggy

__all__ = ["hookspec", "hookimpl"]

hookspec = pluggy.HookspecMarker("personalize")
hookimpl = pluggy.HookimplMarker("personalize")


@hookspec
def register_commands(cli: Any) -> None:
    """Add click commands or groups to the ``personalize`` command line."""
