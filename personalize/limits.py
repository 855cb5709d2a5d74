"""Bounds on the work one Rank may give VW: the feature entries it sends and the features VW crosses.

VW's cost per Rank grows with every action example's features and, above all, with the features
its interactions form: with ``-q ca`` each context feature times each action feature, in every
action. Unbounded, one 800 KB Rank formed 2.5e9 crossed features and held the process for 4 s
(its learning for 8 s). Two settings bound it: ``max_features`` (entries sent, counted while the
feature lists are walked: ``features.FeatureBudget``) and ``max_crossed_features`` (counted here
from the feature counts, exactly as VW forms them, before VW sees the request). bench/heavy_requests.py
measures the worst admitted Rank against the defaults.

How VW forms interactions (``-q``/``--quadratic``, ``--cubic``, ``--interactions``), checked against
VW in tests/test_limits.py: a term crosses the feature groups of its namespace indices (a
namespace's first character); ``:`` stands for every namespace present (printable indices, not the
constant); terms equal up to order are formed once (unless ``--leave_duplicate_interactions``); and
a namespace repeated in a term forms each unordered combination once (unless ``--permutations``):
``-q cc`` over n features forms n(n+1)/2 of them, ``--cubic ccc`` n(n+1)(n+2)/6.
"""

from __future__ import annotations

import itertools
import logging
import math
import re
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Sequence

from personalize.api.errors import ApiError
from personalize.features import ACTION_ID_NAMESPACE, ACTION_INDEX, CONTEXT_INDEX, vw_feature_count

__all__ = ["Interactions", "RankLimits", "UNCOUNTED_OPTIONS"]

WILDCARD = ":"
#: The namespace index of ``ActionId`` (setting action_id_feature = bias).
BIAS_INDEX = ACTION_ID_NAMESPACE[0]
_OPTIONS = frozenset({"-q", "--quadratic", "--cubic", "--interactions"})
#: VW options that form features this module does not count (the bounds still hold for -q, --cubic and
#: --interactions; these add work in proportion to them, or cross by full namespace name).
UNCOUNTED_OPTIONS = ("--experimental_full_name_interactions", "--redefine", "--lrq", "--lrqfa", "--affix", "--spelling",
                     "--autolink", "--nn")
_HEX = re.compile(r"\\x([0-9a-fA-F]{2})")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Interactions:
    """The interactions of a VW argument list, and how many features they form in one example."""

    terms: tuple[str, ...] = ()
    permutations: bool = False
    keep_duplicates: bool = False

    @classmethod
    def from_vw_args(cls, args: Sequence[str]) -> "Interactions":
        """``-q ca``, ``-qca``, ``--quadratic=ca``, ``--cubic ccc``, ``--interactions cca``... (VW's forms)."""
        terms: list[str] = []
        args = list(args)
        for i, arg in enumerate(args):
            name, _, value = arg.partition("=")
            if name not in _OPTIONS and arg.startswith("-q") and len(arg) > 2 and arg[1] != "-":
                name, value = "-q", arg[2:]
            if name not in _OPTIONS:
                continue
            if not value:
                value = args[i + 1] if i + 1 < len(args) else ""
            terms.append(_HEX.sub(lambda m: chr(int(m.group(1), 16)), value))
        return cls(tuple(terms), "--permutations" in args, "--leave_duplicate_interactions" in args)

    @cached_property
    def _fixed(self) -> tuple[tuple[tuple[str, int], ...], ...] | None:
        """The formed terms as (namespace, times) pairs when no term has a wildcard (known before any example)."""
        if any(WILDCARD in term for term in self.terms):
            return None
        return tuple(tuple(Counter(term).items()) for term in self._formed(self.terms))

    def _formed(self, terms: Sequence[Sequence[str]]) -> list[str]:
        """Each term once up to order (unless keep_duplicates), as its sorted namespaces."""
        formed: list[str] = []
        seen: set[str] = set()
        for term in terms:
            key = "".join(sorted(term))
            if self.keep_duplicates or key not in seen:
                seen.add(key)
                formed.append(key)
        return formed

    def crossed(self, counts: dict[str, int]) -> int:
        """Features the interactions form in one example with ``counts`` features per namespace index."""
        fixed = self._fixed
        if fixed is None:
            present = sorted(ns for ns, n in counts.items() if n > 0 and " " <= ns <= "~")
            expanded = [combination for term in self.terms
                        for combination in itertools.product(*[present if ns == WILDCARD else (ns,) for ns in term])]
            fixed = tuple(tuple(Counter(term).items()) for term in self._formed(expanded))
        total = 0
        for term in fixed:
            product = 1
            for ns, k in term:
                n = counts.get(ns, 0)
                product *= n if k == 1 else n ** k if self.permutations else math.comb(n + k - 1, k)
            total += product
        return total


@dataclass(frozen=True)
class RankLimits:
    """The per-Rank bounds of one service (settings max_features, max_crossed_features)."""

    max_features: int
    max_crossed_features: int
    interactions: Interactions
    action_id: str  # setting action_id_feature: which actions carry their id, in which group

    @classmethod
    def from_settings(cls, settings: Any) -> "RankLimits":
        args = settings.vw_args
        uncounted = [option for option in UNCOUNTED_OPTIONS if any(a.partition("=")[0] == option for a in args)]
        if uncounted:
            log.warning("the learning policy uses %s: max_crossed_features does not count the features they form",
                        ", ".join(uncounted))
        return cls(settings.max_features, settings.max_crossed_features, Interactions.from_vw_args(args),
                   settings.action_id_feature)

    def check_crossed(self, context: dict[str, Any], context_bound: int, actions: Sequence[tuple[str, dict[str, Any]]],
                      bounds: Sequence[int], target: str) -> None:
        """A 400 naming the limit when VW would form more than max_crossed_features for a Rank (the context's
        namespaces and each action's). ``context_bound`` and ``bounds`` are at least the features VW makes of
        the context and of each action (``features.counted_namespaces``): the exact count is taken only when
        the cheap bound is over the limit."""
        crossed = self.interactions.crossed
        sizes = set(bounds)  # actions of one size cross alike; usually all actions have one size
        if len(sizes) == 1:
            size = sizes.pop()
            bound = len(bounds) * crossed(self._example(context_bound, size, size > 0))
        else:
            bound = sum(times * crossed(self._example(context_bound, size, size > 0)) for size, times in Counter(bounds).items())
        if bound <= self.max_crossed_features:
            return
        total = self.crossed(context, actions)
        if total > self.max_crossed_features:
            terms = " ".join(self.interactions.terms) or "none"
            raise ApiError(
                400, "TooManyCrossedFeatures",
                f"This Rank would make VW form {total} crossed features (the learning policy's interactions, {terms}, "
                f"over the context's {vw_feature_count(context)} features and each of the {len(actions)} actions' features); "
                f"at most {self.max_crossed_features} are accepted (setting max_crossed_features): send fewer context or "
                "action features or fewer actions, or raise PERSONALIZE_MAX_CROSSED_FEATURES.", target,
            )

    def crossed(self, context: dict[str, Any], actions: Sequence[tuple[str, dict[str, Any]]]) -> int:
        """Exactly the crossed features VW forms for the context's namespaces and these actions' namespaces."""
        exact = vw_feature_count(context)
        return sum(self.interactions.crossed(self._example(exact, vw_feature_count(namespaces), bool(namespaces)))
                   for _, namespaces in actions)

    def _example(self, context: int, features: int, has_namespaces: bool) -> dict[str, int]:
        """Features per namespace index of one action's example: the context's, the action's and its id
        where build_context puts it (features.build_context)."""
        counts = {CONTEXT_INDEX: context, ACTION_INDEX: features}
        if self.action_id == "cross" or (self.action_id == "auto" and not has_namespaces):
            counts[ACTION_INDEX] += 1
        elif self.action_id == "bias":
            counts[BIAS_INDEX] = 1
        return counts
