"""The plugin contract: every hook a personalize plugin may implement (pluggy markers "personalize").

Each hook is documented in docs/plugins.md under a heading with its full signature; a test
fails when one is not, or has no test.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from personalize.enrichment import RankContext
    from personalize.generator import Generator

__all__ = ["hookspec", "hookimpl"]

hookspec = pluggy.HookspecMarker("personalize")
hookimpl = pluggy.HookimplMarker("personalize")


@hookspec
def register_commands(cli: Any) -> None:
    """Add click commands or groups to the ``personalize`` command line."""


@hookspec
def register_generators() -> list[type[Generator]]:
    """Return candidate generator classes (subclasses of ``personalize.generator.Generator``)."""


@hookspec
def enrich_context(context: RankContext) -> dict[str, Any] | None:
    """Return context features (one feature object) to add to a Rank on the server, or None to add nothing."""
