"""Vowpal Wabbit access in one place: DSJSON text in, predictions and learning out.

``vowpal_wabbit_next``'s public ``Workspace.predict_one``/``learn_one`` re-check the label
type of every example in Python and ``DSJsonFormatParser.parse_json`` wraps every parsed
example in a Python object: for a 50-action Rank that is 51 wrappers and 102 label-type
lookups per call, about as much time as VW spends predicting. Examples parsed by a
workspace's own DSJSON parser always carry that workspace's label type, so :class:`Model`
checks the label type once, at construction, and then calls the extension directly.

The calls are exactly the ones the public wrapper makes (``_core._parse_line_dsjson``,
``predict_multi_ex_one``, ``learn_multi_ex_one``, ``serialize``); tests/test_vw.py proves
identical predictions, learning and serialized models. They are private API of
``vowpal-wabbit-next``, hence the ``>=0.7,<0.8`` pin in pyproject.toml and the check below.
"""

from __future__ import annotations

from typing import Any

import vowpal_wabbit_next as _vw
from vowpal_wabbit_next import _core

__all__ = ["Model", "SlotModel"]

if not (hasattr(_core, "_parse_line_dsjson") and hasattr(_core.Workspace, "predict_multi_ex_one")
        and hasattr(_core.Workspace, "learn_multi_ex_one")):  # pragma: no cover - guards an unpinned upgrade
    raise ImportError(
        f"vowpal-wabbit-next {getattr(_vw, '__version__', '?')} lacks the extension calls personalize.vw uses; "
        "install vowpal-wabbit-next>=0.7,<0.8"
    )


class Model:
    """One VW ``--cb_explore_adf`` workspace, fed DSJSON lines (``{"c": {..., "_multi": [...]}}``).

    Not thread-safe (neither is VW): callers serialize access, as Ranker and Learner do.
    """

    __slots__ = ("_workspace",)
    LABEL_TYPE = _vw.LabelType.CB
    REDUCTION = "--cb_explore_adf"

    def __init__(self, args: list[str] | None = None, model_data: bytes | None = None) -> None:
        workspace = _vw.Workspace(args or [], model_data=model_data)
        if not workspace.multiline or workspace.label_type != self.LABEL_TYPE:
            raise ValueError(
                f"the learning policy must be a multi-line contextual bandit ({self.REDUCTION}); "
                f"VW arguments {args!r} give label type {workspace.label_type}"
            )
        self._workspace: Any = workspace._workspace

    def parse(self, line: str) -> list[Any]:
        """The examples of one DSJSON line (shared example first, then one per action)."""
        return _core._parse_line_dsjson(self._workspace, line)

    def predict(self, line: str) -> list[tuple[int, float]]:
        """The PMF over the line's actions as (action index, probability), in VW's ranking order."""
        return self._workspace.predict_multi_ex_one(self.parse(line))

    def learn(self, line: str) -> None:
        """Learn one labelled DSJSON line."""
        self._workspace.learn_multi_ex_one(self.parse(line))

    def serialize(self) -> bytes:
        """The model as bytes; ``Model(["--quiet"], model_data=...)`` loads it (options travel inside)."""
        return self._workspace.serialize()


class SlotModel(Model):
    """One VW ``--ccb_explore_adf`` workspace (conditional contextual bandit: multi-slot), fed CCB DSJSON
    lines (``{"c": {..., "_multi": [...], "_slots": [...]}, "_outcomes": [...]}``).

    ``predict`` gives one PMF per slot. VW conditions each slot on the slots before it by leaving out
    the action *listed first* for each earlier slot; personalize.multislot relies on that (and
    tests/test_multislot_ranker.py checks it). Every slot sent must keep at least one action: VW
    crashes the process on a slot whose actions are all taken or excluded.
    """

    __slots__ = ()
    LABEL_TYPE = _vw.LabelType.CCB
    REDUCTION = "--ccb_explore_adf"

    def predict_slots(self, line: str) -> list[list[tuple[int, float]]]:
        """Per slot of the line, its PMF as (action index, probability), the action VW conditions on first."""
        return self._workspace.predict_multi_ex_one(self.parse(line))  # type: ignore[no-any-return]
