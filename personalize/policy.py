"""The learning policy (Personalizer's "learning settings"): VW arguments, stored in the database.

The configured ``learning_policy`` setting is the default; ``PUT /configurations/policy`` stores
another in the ``learning_policy`` row, which every process reads (the learner polls it, rankers
follow the model snapshots it publishes), and ``DELETE`` removes the row, back to the default.

A policy is checked before it is accepted, in a child process (``check_policy``): some VW option
combinations abort the process instead of raising, and a bad policy must never reach the learner.
Options that read or write files on the server (``-d``, ``-f``, ``-i``, ``--cache_file``,
``--readable_model``, ...) are refused: a policy is learning settings, not file access.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from personalize.config import Settings
from personalize.models import LearningPolicy

__all__ = ["Policy", "PolicyError", "check_policy", "check_policy_in_process", "current_policy", "store_policy",
           "reset_policy", "read_stored_arguments", "effective_vw_args", "DEFAULT_NAME", "FORBIDDEN_OPTIONS"]

#: Name reported for the configured default policy.
DEFAULT_NAME = "default"
#: Seconds the child process may take to build and exercise a VW workspace with the policy.
CHECK_TIMEOUT = 30.0
#: Longest accepted arguments string.
MAX_ARGUMENTS_LENGTH = 2048

#: VW options that touch files, sockets or the process: refused in a policy.
FORBIDDEN_OPTIONS = frozenset({
    "-d", "--data", "-f", "--final_regressor", "-i", "--initial_regressor", "-c", "--cache", "--cache_file",
    "--readable_model", "--invert_hash", "-p", "--predictions", "-r", "--raw_predictions", "--audit_regressor",
    "--daemon", "--port", "--pid_file", "--port_file", "--sendto", "--foreground", "--num_children",
    "--feature_mask", "--dictionary", "--dictionary_path", "--output_feature_regularizer_binary",
    "--output_feature_regularizer_text", "--input_feature_regularizer", "--extra_metrics", "--save_per_pass",
    "--save_resume", "--preserve_performance_counters", "--compressed", "--audit", "-a", "--passes",
    "--kill_cache", "-k", "--initial_pass_length", "--examples", "--help", "-h", "--version",
})
#: Options we add ourselves or that only concern input parsing: dropped silently from a stored policy
#: (Personalizer's exported policies carry ``--dsjson``).
IGNORED_OPTIONS = frozenset({"--dsjson", "--json", "--quiet"})

#: A Rank-like example to exercise a policy with: context and action features, two actions.
_SAMPLE = json.dumps({
    "_label_cost": -1.0, "_label_probability": 0.5, "_label_Action": 1, "_labelIndex": 0, "a": [1, 2], "p": [0.5, 0.5],
    "c": {"c_user": {"tier": "gold", "age": 3}, "_multi": [{"a_item": {"kind": "x"}}, {"a_item": {"kind": "y"}}]},
})


class PolicyError(ValueError):
    """A policy VW cannot run, or that asks for something a policy may not do; the message says which."""


@dataclass(frozen=True)
class Policy:
    name: str
    arguments: str

    def json(self) -> dict[str, str]:
        return {"name": self.name, "arguments": self.arguments}


def normalize(arguments: str) -> str:
    """The arguments as stored: whitespace collapsed, input-format flags dropped, refused options checked."""
    words = arguments.split()
    for word in words:
        option = word.split("=", 1)[0]
        if option in FORBIDDEN_OPTIONS:
            raise PolicyError(f"{option} is not allowed in a learning policy (it touches files, sockets or the "
                              "process, or only makes sense for the vw command line); remove it")
    kept = [w for w in words if w not in IGNORED_OPTIONS]
    if not kept:
        raise PolicyError("the arguments are empty; send VW arguments such as '--cb_explore_adf --epsilon 0.2 -q ca'")
    return " ".join(kept)


def effective_vw_args(arguments: str) -> list[str]:
    """The VW argument list the service runs for ``arguments`` (``--cb_explore_adf`` and ``--quiet`` added)."""
    return Settings(learning_policy=arguments).vw_args


def _exercise(args: list[str]) -> None:
    """Build a workspace, predict and learn one example: what the ranker and learner will do."""
    from personalize.vw import Model

    model = Model(args)
    model.predict(_SAMPLE)
    model.learn(_SAMPLE)
    Model(["--quiet"], model_data=model.serialize()).predict(_SAMPLE)


@lru_cache(maxsize=64)
def check_policy_in_process(arguments: str) -> str:
    """``normalize`` plus a VW check in this process (for the configured setting at start: a flag VW
    does not know raises, it does not abort). Returns the normalized arguments; PolicyError if refused."""
    normalized = normalize(arguments)
    try:
        _exercise(effective_vw_args(normalized))
    except (RuntimeError, ValueError) as exc:
        raise PolicyError(f"VW cannot run {normalized!r}: {exc}") from None
    return normalized


def check_policy(arguments: str) -> str:
    """``normalize`` plus a VW check in a child process, so an option combination that aborts VW
    cannot take the server down. Returns the normalized arguments; PolicyError if refused."""
    normalized = normalize(arguments)
    if len(normalized) > MAX_ARGUMENTS_LENGTH:
        raise PolicyError(f"the arguments are longer than {MAX_ARGUMENTS_LENGTH} characters")
    try:
        done = subprocess.run([sys.executable, "-m", "personalize.policy"], input=normalized, capture_output=True,
                              text=True, timeout=CHECK_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise PolicyError(f"VW did not build {normalized!r} within {CHECK_TIMEOUT:.0f} s") from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        reason = lines[-1] if lines and done.returncode == 2 else f"VW stopped the process (exit {done.returncode})"
        raise PolicyError(f"VW cannot run {normalized!r}: {reason}")
    return normalized


def read_stored_arguments(session: Session) -> LearningPolicy | None:
    return session.get(LearningPolicy, 1)


def current_policy(session: Session, settings: Settings) -> Policy:
    """The policy in force: the stored one, else the configured default."""
    row = read_stored_arguments(session)
    if row is None:
        return Policy(DEFAULT_NAME, settings.learning_policy)
    return Policy(row.name, row.arguments)


def store_policy(session: Session, policy: Policy, now: float | None = None) -> None:
    """Make ``policy`` (already checked) the running one; the learner starts its new model within a second or so."""
    row = session.get(LearningPolicy, 1)
    now = time.time() if now is None else now
    if row is None:
        session.add(LearningPolicy(id=1, name=policy.name, arguments=policy.arguments, updated_at=now))
    else:
        row.name, row.arguments, row.updated_at = policy.name, policy.arguments, now


def reset_policy(session: Session) -> None:
    """Back to the configured default policy."""
    session.execute(delete(LearningPolicy))


def stored_arguments_query():  # type: ignore[no-untyped-def]
    return select(LearningPolicy.arguments).where(LearningPolicy.id == 1)


def _main() -> int:
    """Child process of ``check_policy``: the arguments on stdin; exit 2 with the reason on stderr."""
    arguments = sys.stdin.read()
    try:
        _exercise(effective_vw_args(arguments))
    except Exception as exc:  # noqa: BLE001 - any refusal is the answer
        print(f"{exc}".replace("\n", " "), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_main())
