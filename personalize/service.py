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
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from personalize import model_admin, service_config, store
from personalize.api.errors import ApiError
from personalize.api.schemas import RequestSchemas
from personalize.config import Settings
from personalize.db import Database
from personalize.db_health import OUTAGE_BACKOFF
from personalize.ops import metrics as ops_metrics
from personalize.candidates import CandidateEngine, UnknownGeneratorError, fit_generators, save_generators
from personalize.catalog import load_training_data
from personalize.enrichment import Enricher
from personalize.features import ACTION_INDEX, CONTEXT_INDEX, FeatureBudget, build_context, counted_namespaces
from personalize.evaluation.auto import from_service_config
from personalize.evaluation.jobs import JobRunner
from personalize.filters import ItemFilter, parse_filter
from personalize.learner import Learner
from personalize.limits import Interactions, RankLimits
from personalize.models import Item, MultiSlotSnapshot
from personalize.modes import baseline_decision, serves_baseline, stored_mode
from personalize.multislot import (
    SlotRanker, baseline_choice, check_crossed, explore_choice, parse_multislot_request, parse_slot_rewards,
)
from personalize.policy import read_stored_arguments
from personalize.ranker import Ranker
from personalize.vw import Model
from personalize.sampling import seed_for
from personalize.service_config import LiveConfig, ServiceConfig

__all__ = ["Service", "RankRequest", "parse_rank_request", "parse_reward_value", "status_report"]

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
    item_filter: ItemFilter | None = None  # generated candidates only: the metadata filter
    session_items: tuple[str, ...] = ()  # generated candidates only: an anonymous visitor's recent items
    include_item_features: bool = False


def parse_rank_request(body: Any, schemas: RequestSchemas, max_features: int) -> RankRequest:
    """Validate a Personalizer Rank body: first against the RankRequest schema (fields, types, limits),
    then the rules a schema cannot state. Every error names the field and the fix.

    Without ``actions`` the body names a ``userId`` or ``sessionItems``: its candidates are generated later.
    """
    schemas.check("RankRequest", body)
    item_filter = parse_filter(body.get("filter"))
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
                       budget=budget, context_features=context_features, action_features=action_features,
                       item_filter=item_filter, session_items=tuple(dict.fromkeys(body.get("sessionItems") or ())),
                       include_item_features=bool(body.get("includeItemFeatures")))


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
        # The service configuration in force (GET/PUT /configurations/service), polled by a thread.
        self.live = LiveConfig(settings, self.db)
        self.live.refresh()
        self.ranker = Ranker(self._policy_vw_args(), self.live.current.exploration, settings.squarecb_actions)
        self.live.on_change(lambda config: self.ranker.set_exploration(config.exploration))
        self.limits = RankLimits.from_settings(settings)
        self.enricher = Enricher(settings.time_zone, settings.enrich_context)
        self.slot_ranker = SlotRanker(settings.multislot_vw_args, settings.exploration, settings.squarecb_actions)
        self.slot_limits = RankLimits(settings.max_features, settings.max_crossed_features,
                                      Interactions.from_vw_args(settings.multislot_vw_args), settings.action_id_feature)
        self.learner: Learner | None = None
        self.metrics = ops_metrics.Metrics.get()
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
            self.learner = Learner(settings, self.db, clock, on_publish=self._published, live=self.live,
                                   metrics=self.metrics, on_publish_slots=self.slot_ranker.load)
            self.jobs = JobRunner(settings, self.db, self.learner.holds_lease, clock,
                                  auto_settings=lambda: from_service_config(self.live.current))

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
        """Start background work: the configuration watcher, and the learner thread or a watcher for another
        process's snapshots."""
        if self.learner is not None:
            # The ranker loads this learner's snapshots as they are published; a model imported or reset by
            # another process is found by this poll (the watcher below does it more often without a learner).
            self.live.on_poll(self._load_latest_model)
        self.live.start()
        if self.settings.learner == "thread" and self.learner is not None:
            self.learner.start()
        elif self.settings.learner == "off":
            self._watcher = threading.Thread(target=self._watch_models, name="personalize-model-watcher", daemon=True)
            self._watcher.start()
        if self.jobs is not None:
            self.jobs.start()
        threading.Thread(target=self.enricher.warm, name="personalize-context-warm-up", daemon=True).start()
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
        self.live.stop()
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
            if store.latest_version(session, MultiSlotSnapshot) > self.slot_ranker.version:
                snapshot = store.latest_snapshot(session, MultiSlotSnapshot)
                if snapshot is not None:
                    self.slot_ranker.load(snapshot.version, snapshot.model)
        self.metrics.serving_version(self.ranker.version)

    def _published(self, version: int, model: bytes, vw_args: str) -> None:
        """The in-process learner published a snapshot (under policy ``vw_args``): rank with it."""
        self.ranker.load(version, model, vw_args)
        self.metrics.serving_version(self.ranker.version)

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
                fitted = fit_generators(data, names, self.settings)
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
        """Fill ``request.actions`` from the candidate generators (Rank by userId or sessionItems, no actions).

        ``excludedActions``, the session's items and the ``filter`` are applied by the generators, before the
        candidates are cut to ``numCandidates``: the answer has that many when the catalog allows.
        """
        # The schema bounds numCandidates (an integer, 5.0 included); the default is capped like it.
        n = int(body.get("numCandidates", min(self.settings.num_candidates, self.settings.max_actions)))
        names = body.get("generators")
        engine = self._candidate_engine()
        if request.session_items:
            self._check_session_items(engine, request.session_items)
            request.extra["sessionItems"] = list(request.session_items)
        if request.item_filter is not None:
            request.extra["filter"] = body["filter"]  # logged: the candidate set depended on it
        try:
            proposed = engine.propose(request.user_id, body.get("contextFeatures"), n, names, None, seed_for(request.event_id),
                                      exclude=request.excluded, session_items=request.session_items,
                                      item_filter=request.item_filter)
        except UnknownGeneratorError as exc:
            raise ApiError(422, "UnknownGenerator", f"{exc}; send one of those names, or omit generators to use the configured ones.", "generators") from None
        if not proposed:
            raise self._no_candidates(engine, request)
        for c in proposed:  # catalog features count toward max_features, as sent ones do
            namespaces, count = counted_namespaces(c.features, f"candidates[{c.item_id}]", ACTION_INDEX, request.budget)
            request.actions.append((c.item_id, namespaces))
            request.action_features.append(count)
        request.extra["generators"] = {c.item_id: c.generators for c in proposed}

    def _check_session_items(self, engine: CandidateEngine, items: tuple[str, ...]) -> None:
        """A 400 naming the first sessionItems id the catalog has no item for (ids the loaded generators do not
        know yet are looked up in the store: one query, only then)."""
        unknown = engine.unknown_items(items)
        if unknown:
            with self.db.read() as session:
                stored = set(session.scalars(select(Item.id).where(Item.id.in_(unknown))))
            missing = [item for item in unknown if item not in stored]
            if missing:
                first = items.index(missing[0])
                shown = ", ".join(repr(m) for m in missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
                raise ApiError(400, "UnknownSessionItem", f"sessionItems[{first}] {missing[0]!r} is not a catalog item "
                               f"(unknown: {shown}); send the ids of catalog items (PUT /catalog/items/{{id}} adds one).",
                               f"sessionItems[{first}]")

    def _no_candidates(self, engine: CandidateEngine, request: RankRequest) -> ApiError:
        """The 422 for a Rank whose generators proposed nothing, saying which of its rules left nothing."""
        if request.item_filter is not None:
            matching, missing = engine.filter_report(request.item_filter)
            if missing:
                return ApiError(422, "NoCandidates", f"No catalog item has the feature(s) {', '.join(missing)} that filter "
                                "names; check the spelling against the catalog's features (GET /catalog/items/{id}).",
                                f"filter.{missing[0]}")
            if matching == 0:
                return ApiError(422, "NoCandidates", "No active catalog item satisfies filter; loosen it.", "filter")
            return ApiError(422, "NoCandidates", f"{matching} active item(s) satisfy filter, but the generators proposed "
                            "none of them for this request (already seen, excluded, or unknown to the generators); loosen "
                            "the filter, ask other generators, or retrain (POST /generators/train).", "filter")
        who = f"userId {request.user_id!r}" if request.user_id is not None else "these sessionItems"
        target = "userId" if request.user_id is not None else "sessionItems"
        return ApiError(422, "NoCandidates", f"The generators proposed no items for {who}: the catalog has no active item "
                        "that is not already seen, in the session or in excludedActions (or the generators know nothing "
                        "of these items). Import items (POST /personalizer/v1.0/catalog/items or `personalize import "
                        "items`), exclude fewer, or send actions.", target)

    def rank(self, body: Any, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Rank one request; ``headers`` (the HTTP request's) are what context plugins may read (User-Agent)."""
        request = parse_rank_request(body, self.schemas, self.settings.max_features)
        now = self.clock()
        request.context_features += self.enricher.enrich(request.context, request.budget, body, headers or {}, now,
                                                         request.user_id)
        if not request.actions:  # a userId or sessionItems, and no actions
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
        config = self.live.current  # once: this call uses one whole configuration
        model_index = None
        if serves_baseline(config.learning_mode):  # Apprentice/LoggingOnly: the first kept action, with p = 1
            model_index = decision.chosen
            decision = baseline_decision(decision, 0)
        now = self.clock()  # the event and its reward wait start when it is answered, not when generation began
        wait = config.reward_wait_time
        action_ids = [a for a, _ in kept]
        values = dict(
            event_id=request.event_id, created_at=now, user_id=request.user_id, example=context_json,
            action_ids=action_ids, excluded_ids=request.excluded, ranking=decision.ranking,
            probabilities=decision.probabilities, chosen_index=decision.chosen, probability=decision.probability,
            model_version=decision.model_version, extra=request.extra or None, deferred=request.defer,
            activated_at=None if request.defer else now,
            wait_until=None if request.defer else now + wait,
            ready_at=None if request.defer else now + wait,
            learning_mode=stored_mode(config.learning_mode), model_index=model_index,
        )
        with self.db.transaction() as connection:
            store.insert_event(connection, values)
        self.metrics.ranked("generators" in request.extra, decision.explored)
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
        if request.include_item_features and self.candidates is not None:
            for entry in ranking:
                entry["features"] = self.candidates.item_features(entry["id"]) or {}
        return {"eventId": request.event_id, "rewardActionId": ranking[0]["id"], "ranking": ranking}

    def reward(self, event_id: str, body: Any) -> None:
        value = parse_reward_value(body, self.schemas)
        with self.db.transaction() as connection:
            store.add_reward(connection, event_id, value, self.clock(), self.live.current.reward_aggregation)
        self.metrics.rewarded(value)
        self._learn_inline()

    def activate(self, event_id: str) -> None:
        config = self.live.current
        with self.db.transaction() as connection:
            store.activate_event(connection, event_id, self.clock(), config.reward_wait_time, config.reward_aggregation)
        self._learn_inline()

    # -- multi-slot ------------------------------------------------------------------
    def rank_multislot(self, body: Any) -> dict[str, Any]:
        """Fill every slot with a distinct action; log the event (each slot's choice and its probability)."""
        request = parse_multislot_request(body, self.schemas, self.settings.max_features)
        check_crossed(self.slot_limits, request)
        config = self.live.current  # once: this call uses one whole configuration
        # Apprentice/LoggingOnly: every slot answers its baselineAction, logged with probability 1.0
        chooser = baseline_choice if serves_baseline(config.learning_mode) else explore_choice
        try:
            decision = self.slot_ranker.decide(request, self.settings.action_id_feature, chooser)
        except RuntimeError as exc:  # VW refused the features: still the client's input
            raise ApiError(400, "InvalidFeatures", f"The features could not be parsed by VW: {exc}", "contextFeatures") from None
        now = self.clock()
        wait = config.reward_wait_time
        answered = [c for c in decision.slots if c.ranking]
        joint = 1.0
        for choice in answered:
            joint *= choice.probabilities[0]
        values = dict(
            event_id=request.event_id, created_at=now, user_id=None, example=decision.example,
            action_ids=[a for a, _ in request.actions], excluded_ids=[],
            ranking=[c.ranking[0] for c in answered], probabilities=[c.probabilities[0] for c in answered],
            chosen_index=answered[0].ranking[0], probability=joint, model_version=decision.model_version, extra=None,
            deferred=request.defer, activated_at=None if request.defer else now,
            wait_until=None if request.defer else now + wait, ready_at=None if request.defer else now + wait,
            slots=[{"id": c.id, "ranking": c.ranking, "probabilities": c.probabilities} for c in decision.slots],
            learning_mode=stored_mode(config.learning_mode),
        )
        with self.db.transaction() as connection:
            store.insert_event(connection, values)
        slots = []
        for choice in decision.slots:
            answer: dict[str, Any] = {"id": choice.id}
            if choice.ranking:
                answer["rewardActionId"] = request.actions[choice.ranking[0]][0]
            slots.append(answer)
        return {"eventId": request.event_id, "slots": slots}

    def reward_multislot(self, event_id: str, body: Any) -> None:
        rewards = parse_slot_rewards(body, self.schemas)
        with self.db.transaction() as connection:
            store.add_slot_rewards(connection, event_id, rewards, self.clock(), self.settings.reward_aggregation)
        self._learn_inline()

    def activate_multislot(self, event_id: str) -> None:
        with self.db.transaction() as connection:
            store.activate_event(connection, event_id, self.clock(), self.settings.reward_wait_time,
                                 self.settings.reward_aggregation, multislot=True)
        self._learn_inline()

    def _learn_inline(self) -> None:
        if self.settings.learner != "inline" or self.learner is None:
            return
        self._inline_calls += 1
        if self._inline_calls % self.settings.learn_every:
            return
        try:
            self.learner.step()
            self.learner.maybe_purge()
        except Exception as error:  # the reward is stored; the next step retries the learning
            if not self.db.health.failed(error):
                log.exception("inline learning failed; will retry on the next call")
            self.learner.invalidate()

    def store_gauges(self) -> tuple[int, float] | None:
        """The metrics read from the database at scrape time (newest model version, learner lag); None
        while the database is unreachable, so /metrics still answers with every process's counters."""
        try:
            with self.db.reading() as connection:
                return ops_metrics.store_gauges(connection, self.clock())
        except Exception as error:
            if self.db.health.failed(error):
                return None
            raise

    def status(self) -> dict[str, Any]:
        self.live.refresh()  # status is read to check a change: show the stored configuration, not the last poll's
        with self.db.read() as session:
            status = status_report(session, self.settings, self.live.current, self.clock())
        status["model"]["servingVersion"] = self.ranker.version
        status["multislotModel"]["servingVersion"] = self.slot_ranker.version
        status["settings"]["learningPolicy"] = " ".join(a for a in self.ranker.vw_args if a != "--quiet")
        return status

    # -- administration (Personalizer's configuration, model and logs operations) ------------
    def configuration(self) -> dict[str, Any]:
        """GET /configurations/service: the configuration in force, with Apprentice metrics when there are any."""
        self.live.refresh()
        body = self.live.current.to_api()
        with self.db.read() as session:
            metrics = store.apprentice_metrics(session, self.settings.reward_min, self.settings.reward_max)
        if metrics is not None:
            body["latestApprenticeModeMetrics"] = personalizer_apprentice_metrics(metrics)
        return body

    def update_configuration(self, body: Any) -> dict[str, Any]:
        """PUT /configurations/service: validate, store (every process applies it within config_poll_interval)."""
        self.schemas.check("ServiceConfiguration", body)
        config = self.store_configuration(lambda current: service_config.parse_update(body, current, self.settings, self.clock()))
        return config.to_api()

    def store_configuration(self, change: Callable[[ServiceConfig], ServiceConfig]) -> ServiceConfig:
        """Apply ``change`` to the stored configuration in one transaction and use the result in this process now."""
        with self.db.write() as session:
            config = service_config.save(session, change(service_config.load(session, self.settings)), self.clock())
        self.live.apply(config)
        return config

    def export_model(self, signed: bool) -> bytes:
        with self.db.read() as session:
            return model_admin.export_model(session, self.settings, signed, self.clock())

    def import_model(self, data: bytes) -> None:
        self._use_model(model_admin.import_model(self.db, self.settings, data, self.clock()))

    def reset_model(self) -> None:
        self._use_model(model_admin.reset_model(self.db, self.settings, self.clock()))

    def _use_model(self, installed: model_admin.Installed) -> None:
        """Serve an imported or reset model now in this process; the learner continues from it."""
        self.ranker.load(installed.version, installed.model, installed.vw_args)
        if self.learner is not None:
            self.learner.invalidate()

    def model_properties(self) -> dict[str, str]:
        with self.db.read() as session:
            return model_admin.model_properties(session)

    def log_properties(self) -> dict[str, Any]:
        with self.db.read() as session:
            first, last = store.log_date_range(session)
        return {"dateRange": {} if first is None else {"from": _iso(first), "to": _iso(last)}}

    def delete_logs(self) -> int:
        with self.db.write() as session:
            return store.delete_logs(session)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def status_report(session: Session, settings: Settings, config: ServiceConfig, now: float) -> dict[str, Any]:
    """The status body (GET /status and `personalize status`): counts, the settings and live configuration in
    force, and how the model compares with the baseline over the newest Apprentice events."""
    status = store.status_counts(session, now)
    status["settings"] = {**settings.status_summary(), **config.summary()}
    status["apprentice"] = store.apprentice_metrics(session, settings.reward_min, settings.reward_max)
    return status


def personalizer_apprentice_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """Our Apprentice metrics in Personalizer's ``latestApprenticeModeMetrics`` shape."""

    def counts(part: dict[str, Any]) -> dict[str, Any]:
        return {"numberOfEvents": part["events"], "numberOfImitatedEvents": part["agreedEvents"],
                "sumOfRewards": part["sumOfRewards"], "sumOfImitatedRewards": part["sumOfImitatedRewards"]}

    return {"startTime": _iso(metrics["from"]), "lastProcessedEventTime": _iso(metrics["to"]), **counts(metrics),
            "lastBatchMetrics": counts(metrics["lastBatch"])}
