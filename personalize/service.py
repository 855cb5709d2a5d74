"""The Rank/Reward service: validates requests, asks the ranker, logs events, feeds the learner.

One object per process, shared by the HTTP blueprints. Every Rank and Reward is committed
to the database before the call returns, so an acknowledged event is never lost.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from personalize import store
from personalize.api.errors import ApiError
from personalize.api.schemas import RequestSchemas
from personalize.config import Settings
from personalize.db import Database
from personalize.db_health import OUTAGE_BACKOFF
from personalize.candidates import CandidateEngine, UnknownGeneratorError, fit_generators, save_generators
from personalize.catalog import load_training_data
from personalize.features import ACTION_INDEX, CONTEXT_INDEX, FeatureBudget, build_context, counted_namespaces
from personalize.evaluation.jobs import JobRunner
from personalize.learner import Learner
from personalize.limits import RankLimits
from personalize.models import Item
from personalize.policy import read_stored_arguments
from personalize.ranker import Ranker
from personalize.vw import Model
from personalize.sampling import seed_for

__all__ = ["Service", "RankRequest", "parse_rank_request", "parse_reward_value"]

log = logging.getLogger(__name__)



@dataclass
class RankRequest:
    event_id: str
    context: dict[str, Any]  # VW namespaces (features.feature_namespaces)
    actions: list[tuple[str, dict[str, Any]]]  # (id, VW namespaces), request order
    excluded: list[str]
    defer: bool
    user_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    budget: FeatureBudget = field(default_factory=lambda: FeatureBudget(0))  # max_features, spent by the feature lists
    context_features: int = 0  # at least the features VW makes of the context and of each action (limits.RankLimits)
    action_features: list[int] = field(default_factory=list)


def parse_rank_request(body: Any, schemas: RequestSchemas, max_features: int) -> RankRequest:
    """Validate a Personalizer Rank body: first against the RankRequest schema (fields, types, limits),
    then the rules a schema cannot state. Every error names the field and the fix.

    Without ``actions`` the body names a ``userId``: its candidates are generated later.
    """
    schemas.check("RankRequest", body)
    event_id = body.get("eventId") or uuid.uuid4().hex
    user_id = body.get("userId")
    budget = FeatureBudget(max_features)
    context, context_features = counted_namespaces(body.get("contextFeatures"), "contextFeatures", CONTEXT_INDEX, budget)
    raw_actions = body.get("actions")
    actions: list[tuple[str, dict[str, Any]]] = []
    action_features: list[int] = []
    if raw_actions is not None:
        seen: set[str] = set()
        for i, action in enumerate(raw_actions):
            action_id = action["id"]
            if action_id in seen:
                raise ApiError(400, "DuplicateActionId", f"actions[{i}].id {action_id!r} appears twice; action ids must be unique.", f"actions[{i}].id")
            seen.add(action_id)
            namespaces, count = counted_namespaces(action.get("features"), f"actions[{i}].features", ACTION_INDEX, budget)
            actions.append((action_id, namespaces))
            action_features.append(count)
    excluded: list[str] = body.get("excludedActions") or []
    if actions and excluded:
        ids = {a for a, _ in actions}
        for i, value in enumerate(excluded):
            if value not in ids:
                target = f"excludedActions[{i}]"
                raise ApiError(400, "UnknownExcludedAction", f"{target} {value!r} is not the id of any action in this request.", target)
        if ids.issubset(excluded):
            raise ApiError(400, "AllActionsExcluded", "Every action is in excludedActions; leave at least one action to rank.", "excludedActions")
    return RankRequest(event_id=event_id, context=context, actions=actions, excluded=list(excluded),
                       defer=bool(body.get("deferActivation")), user_id=user_id,
                       budget=budget, context_features=context_features, action_features=action_features)


def parse_reward_value(body: Any, schemas: RequestSchemas) -> float:
    """The reward's value, validated by the RewardRequest schema (a number within the reward range)."""
    schemas.check("RewardRequest", body)
    return float(body["value"])


class Service:
    """The process-wide service: database, ranker, learner and (optionally) candidate generation."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.schemas = RequestSchemas(settings)
        self.db = Database.for_settings(settings)
        self.db.upgrade()
        self.sessions: sessionmaker[Session] = self.db.sessions  # for plugins; writers should use db.write()
        self.ranker = Ranker(self._policy_vw_args(), settings.exploration, settings.squarecb_actions)
        self.limits = RankLimits.from_settings(settings)
        self.learner: Learner | None = None
        self.candidates: CandidateEngine | None = CandidateEngine(settings, self.sessions, self.db.health) if settings.generators.strip() else None
        self._candidates_loaded = False
        self._candidates_lock = threading.Lock()
        self._train_lock = threading.Lock()
        self._inline_calls = 0
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._load_latest_model()
        self.jobs: JobRunner | None = None
        if settings.learner in ("thread", "inline"):
            self.learner = Learner(settings, self.db, clock, on_publish=self.ranker.load)
            self.jobs = JobRunner(settings, self.db, self.learner.holds_lease, clock)

    def _policy_vw_args(self) -> list[str]:
        """The VW arguments of the policy in force (stored by PUT /configurations/policy, else the setting)."""
        with self.db.read() as session:
            stored = read_stored_arguments(session)
        if stored is None:
            return self.settings.vw_args
        args = self.settings.replace_policy(stored.arguments).vw_args
        try:
            Model(args)
        except (RuntimeError, ValueError) as exc:  # checked when stored; a VW upgrade may still refuse it
            log.error("the stored learning policy %r cannot run (%s); ranking with the configured default until the "
                      "policy is set again (PUT /configurations/policy)", stored.arguments, exc)
            return self.settings.vw_args
        return args

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> None:
        """Start background work: the learner thread, or a watcher for another process's snapshots."""
        if self.settings.learner == "thread" and self.learner is not None:
            self.learner.start()
        if self.jobs is not None:
            self.jobs.start()
        elif self.settings.learner == "off":
            self._watcher = threading.Thread(target=self._watch_models, name="personalize-model-watcher", daemon=True)
            self._watcher.start()
        if self.candidates is not None and self._catalog_has_items():
            # Load (or fit) the generators now, off the request path; Rank by userId waits only if it comes first.
            threading.Thread(target=self._load_candidates_quietly, name="personalize-candidates-load", daemon=True).start()

    def _catalog_has_items(self) -> bool:
        with self.db.read() as session:
            return session.execute(select(Item.id).limit(1)).first() is not None

    def _load_candidates_quietly(self) -> None:
        try:
            self._candidate_engine()
        except Exception as error:  # the first Rank by userId retries and reports the error to its caller
            if not self.db.health.failed(error):
                log.exception("could not load the candidate generators at start")

    def close(self) -> None:
        """Stop background threads and release the database (safe to call twice)."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self.jobs is not None:
            self.jobs.stop()
        if self.learner is not None:
            self.learner.stop()
        if self._watcher is not None:
            self._watcher.join(5)
        if self.candidates is not None:
            self.candidates.stop()
        self.db.dispose()

    def _load_latest_model(self) -> None:
        with self.db.read() as session:
            version = store.latest_version(session)
            if version > self.ranker.version:
                snapshot = store.latest_snapshot(session)
                if snapshot is not None:
                    self.ranker.load(snapshot.version, snapshot.model, snapshot.vw_args)

    def _watch_models(self) -> None:
        while not self._stop.wait(self.settings.model_poll_interval):
            try:
                self._load_latest_model()
            except Exception as error:
                if self.db.health.failed(error):  # an outage is logged once, by db_health; retry at a calm pace
                    self._stop.wait(OUTAGE_BACKOFF)
                else:
                    log.exception("could not load the newest model snapshot; will retry")

    # -- API operations ----------------------------------------------------------------
    def _candidate_engine(self) -> CandidateEngine:
        """The generators, loaded (or fitted) on first use; refreshed in the background after that."""
        if self.candidates is None:
            raise ApiError(422, "GeneratorsDisabled", "No candidate generators are enabled; send actions, or set PERSONALIZE_GENERATORS.", "actions")
        if not self._candidates_loaded:
            with self._candidates_lock:
                if not self._candidates_loaded:
                    self.candidates.load()
                    if self.settings.generator_refresh_interval > 0 and not self._stop.is_set():
                        self.candidates.start_refresh()
                    self._candidates_loaded = True
        return self.candidates

    def train_generators(self, body: dict[str, Any] | None) -> dict[str, Any]:
        """Fit the generators on the store now, store the models, and switch this process to them.

        The same work as `personalize train`, for clients (and the simulator) that retrain on
        their own schedule. Rank calls keep being answered by the previous models meanwhile.
        """
        if self.candidates is None:
            raise ApiError(422, "GeneratorsDisabled", "No candidate generators are enabled; set PERSONALIZE_GENERATORS.", "generators")
        names = body.get("generators") if body else None  # checked by the TrainRequest schema
        with self._train_lock:
            with self.db.read() as session:
                data = load_training_data(session)
            try:
                fitted = fit_generators(data, names)
            except UnknownGeneratorError as exc:
                raise ApiError(422, "UnknownGenerator", f"{exc}; send one of those names, or omit generators to train all.", "generators") from None
            with self.db.write() as session:
                save_generators(session, {name: generator for name, (generator, _) in fitted.items()}, now=self.clock())
            engine = self._candidate_engine()
            engine.refresh()
        return {
            "items": len(data.item_ids), "users": len(data.user_ids), "interactions": len(data.values),
            "trained": {name: {"seconds": round(seconds, 3)} for name, (_, seconds) in fitted.items()},
        }

    def _generate_actions(self, request: RankRequest, body: dict[str, Any]) -> None:
        """Fill ``request.actions`` from the candidate generators (Rank by userId, no actions)."""
        # The schema bounds numCandidates (an integer, 5.0 included); the default is capped like it.
        n = int(body.get("numCandidates", min(self.settings.num_candidates, self.settings.max_actions)))
        names = body.get("generators")
        engine = self._candidate_engine()
        try:
            proposed = engine.propose(request.user_id, body.get("contextFeatures"), n, names, None, seed_for(request.event_id))
        except UnknownGeneratorError as exc:
            raise ApiError(422, "UnknownGenerator", f"{exc}; send one of those names, or omit generators to use the configured ones.", "generators") from None
        if not proposed:
            raise ApiError(422, "NoCandidates", f"The generators proposed no items for userId {request.user_id!r}: the catalog "
                           "has no active item this user has not interacted with yet. Import items (POST "
                           "/personalizer/v1.0/catalog/items or `personalize import items`), or send actions.", "userId")
        for c in proposed:  # catalog features count toward max_features, as sent ones do
            namespaces, count = counted_namespaces(c.features, f"candidates[{c.item_id}]", ACTION_INDEX, request.budget)
            request.actions.append((c.item_id, namespaces))
            request.action_features.append(count)
        request.extra["generators"] = {c.item_id: c.generators for c in proposed}
        if set(request.extra["generators"]).issubset(request.excluded):
            raise ApiError(400, "AllActionsExcluded", "Every generated candidate is in excludedActions; exclude fewer items.", "excludedActions")

    def rank(self, body: Any) -> dict[str, Any]:
        request = parse_rank_request(body, self.schemas, self.settings.max_features)
        if not request.actions:  # a userId and no actions
            self._generate_actions(request, body)
        excluded = set(request.excluded)
        kept = [(a, f) for a, f in request.actions if a not in excluded]
        bounds = request.action_features
        if excluded:
            bounds = [n for (a, _), n in zip(request.actions, bounds) if a not in excluded]
        self.limits.check_crossed(request.context, request.context_features, kept, bounds,
                                  "contextFeatures" if body.get("actions") is not None else "numCandidates")
        context_json = build_context(request.context, kept, self.settings.action_id_feature)
        try:
            decision = self.ranker.decide(context_json, request.event_id)
        except RuntimeError as exc:  # VW refused the features: still the client's input
            raise ApiError(400, "InvalidFeatures", f"The features could not be parsed by VW: {exc}", "contextFeatures") from None
        now = self.clock()
        wait = self.settings.reward_wait_time
        action_ids = [a for a, _ in kept]
        values = dict(
            event_id=request.event_id, created_at=now, user_id=request.user_id, example=context_json,
            action_ids=action_ids, excluded_ids=request.excluded, ranking=decision.ranking,
            probabilities=decision.probabilities, chosen_index=decision.chosen, probability=decision.probability,
            model_version=decision.model_version, extra=request.extra or None, deferred=request.defer,
            activated_at=None if request.defer else now,
            wait_until=None if request.defer else now + wait,
            ready_at=None if request.defer else now + wait,
        )
        with self.db.transaction() as connection:
            store.insert_event(connection, values)
        ranking = [{"id": action_ids[i], "probability": p} for i, p in zip(decision.ranking, decision.probabilities)]
        provenance = request.extra.get("generators")
        if provenance:
            for entry in ranking:
                entry["generators"] = provenance.get(entry["id"], [])
            if self.settings.diversity > 0 and self.candidates is not None:
                # Diversity-aware order of the tail: display only, the chosen action stays first.
                order = self.candidates.diversify([e["id"] for e in ranking], self.settings.diversity, keep=1)
                by_id = {e["id"]: e for e in ranking}
                ranking = [by_id[i] for i in order]
        return {"eventId": request.event_id, "rewardActionId": ranking[0]["id"], "ranking": ranking}

    def reward(self, event_id: str, body: Any) -> None:
        value = parse_reward_value(body, self.schemas)
        with self.db.transaction() as connection:
            store.add_reward(connection, event_id, value, self.clock(), self.settings.reward_aggregation)
        self._learn_inline()

    def activate(self, event_id: str) -> None:
        with self.db.transaction() as connection:
            store.activate_event(connection, event_id, self.clock(), self.settings.reward_wait_time, self.settings.reward_aggregation)
        self._learn_inline()

    def _learn_inline(self) -> None:
        if self.settings.learner != "inline" or self.learner is None:
            return
        self._inline_calls += 1
        if self._inline_calls % self.settings.learn_every:
            return
        try:
            self.learner.step()
        except Exception as error:  # the reward is stored; the next step retries the learning
            if not self.db.health.failed(error):
                log.exception("inline learning failed; will retry on the next call")
            self.learner.invalidate()

    def status(self) -> dict[str, Any]:
        with self.db.read() as session:
            status = store.status_counts(session, self.clock())
        status["model"]["servingVersion"] = self.ranker.version
        settings = {**self.settings.status_summary(), "learningPolicy": " ".join(a for a in self.ranker.vw_args if a != "--quiet")}
        return {**status, "settings": settings}
