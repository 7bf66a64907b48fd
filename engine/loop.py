"""The run loop: one tick = observe → evaluate → store → group and mute → act → queue notifications. Only this module knows the order.

`Monitor.tick()` does the work of one tick and returns a `TickReport`; `Monitor.run()` only
schedules ticks and stops cleanly (after the current tick) when asked.

Acting (engine.act) runs after the tick is stored: diagnose due tickets, gate proposals, run
approved or executable ones, check verification deadlines. Its collaborators are injectable:
`executor=` (an `engine.act.Executor`; `RecordingExecutor` sends nothing, for `opctl test`) and
`diagnoser=` (an `engine.diagnose.Diagnoser`, e.g. with a replayed Anthropic client).

Replicas (`replica=`, what `opctl run` always gives): each tick first holds the store's leader
lease (engine.store.leasing). Every replica observes and evaluates; only the holder writes the
tick and acts. A replica that takes the lease continues from the store's states (the previous
leader's timers and tickets) and marks the executions the previous leader left running
`unknown` (never replayed). A store error (a lock held too long, a database restart) is reported
in the tick and the replica writes nothing that tick; it acts again once the store answers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jinja2

from engine import templates
from engine.act import Actor, Executor, StoreDiagnosisCache, StoreTokenLedger, TargetExecutor
from engine.act.actor import ActReport
from engine.config.models import TARGET_UP, Invariant
from engine.config.validate import LoadedConfig
from engine.diagnose import Diagnoser
from engine.diagnose.prompt import referenced_observations
from engine.evaluate import Entity, Evaluation, Evaluator, InvariantReport
from engine.incidents import IncidentStage
from engine.metrics import EngineMetrics
from engine.notify import Notifier
from engine.observe import ObservationResult, Observer
from engine.errors import NotLeader, StoreError
from engine.redact import Redactor
from engine.store import Lease, Store, TickChanges
from engine.target_health import TargetHealth
from engine.trim import trim

SNAPSHOT_BUDGET = 16_000  # characters of observation data kept with a ticket


@dataclass(frozen=True)
class TickReport:
    """What one tick saw and did; printed as one JSON line per tick by `opctl run --json`."""

    tick: int
    at: float
    duration_s: float
    observations: dict[str, dict[str, Any]]
    invariants: dict[str, dict[str, Any]]
    opened: list[dict[str, Any]] = field(default_factory=list)
    resolved: list[dict[str, Any]] = field(default_factory=list)
    open_tickets: int = 0
    actions: list[dict[str, Any]] = field(default_factory=list)
    mode: str = "observe"
    killed: bool = False
    lease: Lease | None = None  # with replicas: the lease as this replica held or saw it
    store_error: str | None = None  # the store failed this tick: nothing was written

    @property
    def leading(self) -> bool:
        return self.lease is None or self.lease.leading

    def as_json(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if self.lease is not None:
            extra["leader"] = self.lease.as_json()
        if self.store_error is not None:
            extra["store_error"] = self.store_error
        return {
            "tick": self.tick,
            "at": round(self.at, 3),
            "duration_s": round(self.duration_s, 4),
            "observations": self.observations,
            "invariants": self.invariants,
            "tickets_opened": self.opened,
            "tickets_resolved": self.resolved,
            "open_tickets": self.open_tickets,
            "actions": self.actions,
            "mode": self.mode,
            "killed": self.killed,
            **extra,
        }


class Monitor:
    """Watches one subject: observe, evaluate, record. Collaborators are injected."""

    def __init__(
        self,
        loaded: LoadedConfig,
        *,
        store: Store,
        observer: Observer | None = None,
        clock: Callable[[], float] = time.time,
        metrics: EngineMetrics | None = None,
        executor: Executor | None = None,
        diagnoser: Diagnoser | None = None,
        replica: str | None = None,
    ) -> None:
        self.loaded = loaded
        self.config = loaded.config
        self.store = store
        self.observer = observer or Observer(loaded)
        self.clock = clock
        self.metrics = metrics or EngineMetrics()
        self.metrics.know(observations=self.config.observations,
                          invariants=[*(inv.name for inv in self.config.invariants), TARGET_UP])
        self.evaluator = Evaluator(self.config)
        self.target_health = TargetHealth(self.config)
        self.redactor = Redactor(loaded.secrets)
        self.states = store.load_states()  # restored: a restart continues pending/firing timers
        self.previous: dict[str, Any] = {}
        self.variables = self.config.variable_values()  # `vars`, for ticket messages
        self.last_reports: dict[str, InvariantReport] = {}  # the latest tick's, by invariant
        self.ticks = 0
        self.executor: Executor = executor or TargetExecutor(loaded)
        cache = StoreDiagnosisCache(store, clock=clock)
        self.diagnoser = diagnoser or Diagnoser(
            loaded, observe=self.observer.observe, cache=cache, ledger=StoreTokenLedger(store), clock=clock
        )
        self.actor = Actor(
            loaded, store=store, observe=self.observer.observe, diagnoser=self.diagnoser, executor=self.executor,
            cache=cache if diagnoser is None else None, clock=clock,
        )
        self.incidents = IncidentStage(self.config, store)
        self.replica = replica  # None: the only engine on its store, no lease
        self.lease: Lease | None = None
        self._unwritten = False  # a tick since the store's states were last written or read back
        self.notifier = Notifier(loaded, store, clock=clock, redactor=self.redactor, leading=self._leading) if self.config.notify else None
        if replica is None:
            # executions a crash left running are never replayed: their outcome is unknown
            store.interrupted_executions(clock())

    def _leading(self) -> bool:
        """This engine may act (and notify): the only one on its store, or the lease holder."""
        return self.replica is None or (self.lease is not None and self.lease.leading)

    def _hold_lease(self) -> tuple[Lease | None, str | None]:
        """Renew or take the lease (with replicas); a store error means following this tick."""
        if self.replica is None:
            return None, None
        try:
            lease = self.store.hold_lease(self.replica, ttl=self.config.lease_ttl)
            if lease.acquired or (lease.leading and self._unwritten):
                # the store is the truth: continue the previous leader's timers and tickets. Also
                # after ticks this replica could not write (it followed, or the store was down):
                # its states moved on in memory past transitions the store never recorded
                self.states = self.store.load_states()
                self._unwritten = False
            if lease.acquired:
                self.store.interrupted_executions(self.clock())
        except StoreError as exc:
            self.lease = self._lost(self.lease) or Lease(None, 0, None, 0.0, self.replica)
            return self.lease, self.redactor.text(str(exc))
        self.lease = lease
        return lease, None

    async def tick(self) -> TickReport:
        started = time.monotonic()
        lease, store_error = self._hold_lease()
        leading = store_error is None and (lease is None or lease.leading)
        results = await self.observer.observe_all()
        now = self.clock()
        evaluation = self.evaluator.evaluate(results, self.previous, self.states, now)
        evaluation = self.target_health.add_to(evaluation, results, self.states, now)
        acted = ActReport()
        changes = TickChanges(opened=(), resolved=(), updated=(), held=(), events=0)
        if leading and self.replica is not None:
            # renewed again once observed: slow observations do not lapse the lease before the
            # writes (a lease taken only now reloads the store's states; this tick writes nothing)
            lease, store_error = self._hold_lease()
            leading = store_error is None and lease is not None and lease.leading and not lease.acquired
        if leading:
            try:
                changes, acted = await self._write_and_act(results, evaluation, now)
            except NotLeader as exc:  # another replica took over while this one was paused
                lease = self.lease = self._lost(lease)
                store_error = str(exc)
                self._unwritten = True
            except StoreError as exc:
                if self.replica is None:
                    raise  # the only engine on its store: a store that fails stops it, as it always did
                store_error = self.redactor.text(str(exc))
                self._unwritten = True
        else:
            self.states = evaluation.states  # a follower stays warm; leading again reloads the store's
            self._unwritten = True
        self.last_reports = evaluation.reports
        self.previous.update({name: r.value for name, r in results.items() if r.ok})
        self.ticks += 1
        report = TickReport(
            tick=self.ticks,
            at=now,
            duration_s=time.monotonic() - started,
            observations={name: _observation_summary(r) for name, r in sorted(results.items())},
            invariants={name: invariant_summary(rep) for name, rep in sorted(evaluation.reports.items())},
            opened=[_ticket_summary(t) for t in changes.opened],
            resolved=[_ticket_summary(t) for t in changes.resolved],
            open_tickets=self._read(self.store.open_ticket_count, 0),
            actions=acted.entries,
            mode=self._read(self.actor.mode, self.config.mode),
            killed=self._read(lambda: self.store.killed() is not None, False),
            lease=lease,
            store_error=store_error,
        )
        self.metrics.record_tick(report, evaluation)
        return report

    @staticmethod
    def _lost(lease: Lease | None) -> Lease | None:
        """The same lease, no longer this replica's."""
        return None if lease is None else Lease(lease.holder, lease.token, lease.expires_at, lease.now, lease.replica)

    @staticmethod
    def _read(read: Callable[[], Any], default: Any) -> Any:
        try:
            return read()
        except StoreError:
            return default

    async def _write_and_act(self, results: Mapping[str, ObservationResult], evaluation: Evaluation, now: float) -> tuple[TickChanges, ActReport]:
        """The leader's part of a tick: store it, then act. States advance only once stored, so
        a tick the store refused is evaluated again from the same states (no transition lost)."""
        # before the tick is stored: a ticket that resolves now is credited on what it saw
        self.actor.confirm_effects({name: r.value for name, r in results.items() if r.ok}, now)
        messages = self._messages(evaluation, results, now)
        snapshot = self._snapshot(evaluation, results)
        changes = self.store.apply_tick(
            states=evaluation.states,
            transitions=evaluation.transitions,
            entities=evaluation.entities,
            observations_snapshot=snapshot,
            invariants={inv.name: inv for inv in self.config.invariants},
            entity_invariants={(TARGET_UP, t): inv for t, inv in self.target_health.invariants.items()},
            messages=messages,
            now=now,
        )
        errors = {name: r.error or "failed" for name, r in results.items() if not r.ok}
        self.store.record_observation_errors(errors, now)
        self.states = evaluation.states
        self.incidents.record(changes, evaluation.states, now)
        acted = await self.actor.step(
            now=now,
            states=evaluation.states,
            entities=evaluation.entities,
            values={name: r.value for name, r in results.items()},
            previous=self.previous,
            admit=lambda ticket: self.incidents.admit(ticket, evaluation.states, now),
        )
        if self.notifier is not None:
            self.notifier.collect(now)  # store writes only: delivery is the notifier's thread
        return changes, acted

    async def run(
        self,
        *,
        interval: float | None = None,
        stop: asyncio.Event,
        on_tick: Callable[[TickReport], None],
        once: bool = False,
    ) -> None:
        """Tick every `interval` seconds until `stop` is set; a tick in progress completes."""
        period = interval if interval is not None else self.config.interval
        if self.notifier is not None:
            self.notifier.start()
        try:
            while not stop.is_set():
                started = time.monotonic()
                on_tick(await self.tick())
                if once:
                    return
                delay = max(0.0, period - (time.monotonic() - started))
                try:
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                except asyncio.TimeoutError:
                    pass
        finally:
            await self.aclose()
            if self.replica is not None:
                try:
                    self.store.release_lease(self.replica)  # a clean stop hands over at once
                except StoreError:
                    pass  # the lease then lapses by its ttl

    async def aclose(self) -> None:
        """Close the connections of the observer, executor and diagnoser (in the tick's loop)."""
        if self.notifier is not None:
            await asyncio.to_thread(self.notifier.stop)
        await self.observer.aclose()
        await self.executor.aclose()
        await self.diagnoser.aclose()

    # ------------------------------------------------------------------ helpers

    def _messages(self, evaluation: Evaluation, results: Mapping[str, ObservationResult], now: float) -> dict[tuple[str, str], str]:
        values = {name: r.value for name, r in results.items()}
        out: dict[tuple[str, str], str] = {}
        for ident, entity in evaluation.entities.items():
            invariant = self.config.invariant(entity.invariant, entity.key)
            if invariant is not None:
                state = evaluation.states.get(ident)
                error = state.last_error if state is not None else None
                out[ident] = self.redactor.text(render_message(invariant, entity, values, now, error=error,
                                                               previous=self.previous, variables=self.variables))
        return out

    def _snapshot(self, evaluation: Evaluation, results: Mapping[str, ObservationResult]) -> dict[str, Any]:
        """What a ticket opened this tick keeps: the observations its invariant reads, trimmed and
        redacted. Built only on ticks that open tickets: it is the expensive part of a quiet tick."""
        firing = {t.invariant for t in evaluation.transitions if t.kind == "firing"}
        if not firing:
            return {}
        names: set[str] = set()
        for invariant in self.config.invariants:
            if invariant.name in firing:
                names.update(referenced_observations(invariant, results.keys()))
        data = {name: (r.value if r.ok else {"error": r.error}) for name, r in results.items() if name in names}
        return self.redactor.value(trim(data, SNAPSHOT_BUDGET))


def render_message(
    invariant: Invariant, entity: Entity, values: Mapping[str, Any], now: float, *, error: str | None = None,
    previous: Mapping[str, Any] | None = None, variables: Mapping[str, Any] | None = None,
) -> str:
    """The ticket message: the invariant's template, or a plain default; never raises. It sees
    what the invariant's expressions see (the observations, `prev`, `vars`, `now`, `item`,
    `key`), as validate checks it, plus `invariant`, `severity` and `labels`.

    On an error sample (`on_error: firing`) the template's data is missing: the message says
    so, with the reason, instead of rendering a half-empty template.
    """
    subject = f"'{entity.key}'" if entity.key else "the cluster"
    default = f"invariant {invariant.name} is violated for {subject}"
    if error is not None:
        return f"{default} (no current data: {error})"
    if invariant.message is None:
        return default
    names = {
        **values,
        "prev": dict(previous or {}),
        "vars": dict(variables or {}),
        "item": entity.item,
        "key": entity.key,
        "invariant": invariant.name,
        "severity": invariant.severity,
        "labels": invariant.labels,
        "now": now,
    }
    try:
        return templates.render(invariant.message, names).strip()
    except (jinja2.TemplateError, TypeError, ValueError, ArithmeticError) as exc:
        return f"{default} (message template failed: {exc})"


def invariant_summary(report: InvariantReport) -> dict[str, Any]:
    """One invariant in the tick report: `state` (firing, pending, unknown, error or ok: see
    InvariantReport.state), `health` and the first `error` (as before), `counts` per
    state (ok, pending, firing, unknown, error; each entity in one), the same ok/pending/firing
    counts at the top level, and `entities`: the keys of the `error` and `unknown` entities with
    their reasons (at most LISTED_ENTITIES each; `more` counts the rest)."""
    return {
        "state": report.state,
        "health": report.health,
        "error": report.error,
        "ok": report.counts["ok"],
        "pending": report.counts["pending"],
        "firing": report.counts["firing"],
        "counts": dict(report.counts),
        "entities": {"error": _listed(report.errors), "unknown": _listed(report.unknown)},
    }


LISTED_ENTITIES = 50


def _listed(reasons: Mapping[str, str]) -> dict[str, Any]:
    shown = dict(list(reasons.items())[:LISTED_ENTITIES])
    return {"keys": shown, "more": len(reasons) - len(shown)}


def _observation_summary(result: ObservationResult) -> dict[str, Any]:
    summary: dict[str, Any] = {"ok": result.ok, "duration_s": round(result.duration_s, 4)}
    if not result.ok:
        summary["error"] = result.error
    if result.endpoint_errors:
        summary["endpoint_errors"] = {endpoint: reason for endpoint, reason in result.endpoint_errors}
    return summary


def _ticket_summary(ticket: Any) -> dict[str, Any]:
    return {
        "id": ticket.id,
        "invariant": ticket.invariant,
        "key": ticket.entity_key,
        "severity": ticket.severity,
        "message": ticket.message,
    }
