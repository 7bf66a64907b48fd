"""`opctl demo`: one chaos scenario on a real lab, watched and fixed by the real operator loop.

    result = run_demo("configs/ratelimiter.yaml", "kill_node", mode="execute", emit=print_entry)
    result.as_json()   # {"scenario", "ok", "detected_s", "recovered_s", "actions", "mode", "tickets_opened", "diagnoses"}

The order: lab up (the config's `lab:`, reached through the lab's `exports`) → the scenario's
`setup` → the operator (the real `Monitor`, in-process, in the requested mode, with a store of
its own, `<state_dir>/demos/<scenario>-<UTC time>.db`, kept for inspection afterwards) ticks
until the lab is quiet → the fault's steps run while the operator keeps ticking (so a fault may
also end: a store restarted after 20 s) → every engine event becomes a timeline line (detected,
diagnosed, proposed/refused/executed, verified), with seconds since injection (the start of
the first inject step that is not a wait) → recovered → `cleanup` → lab down, always (also on
failure or Ctrl-C).

Expectations by mode:
- `execute` / `approve`: detected, then recovered within the scenario's timeout: the fault's
  steps are over, the expected action (if the scenario names one) executed successfully, the
  recovered invariant has no pending or firing entity, every revert the operator armed has run
  (when the scenario expects `reverts_done`), and the scenario's checks pass. Actions that need approval (`approval: required`,
  or every action in `approve` mode) are approved by the demo itself, standing in for the human,
  through the same store call `opctl actions approve` makes; the timeline says so. Only proposals
  for the scenario's own invariant are approved; anything else waits (and expires) as it would
  without a human.
- `observe`: detected and diagnosed, the expected action proposed, and nothing executed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.config.validate import LoadedConfig, load_config
from engine.errors import ConfigError
from engine.lab import supervisor
from engine.lab.chaos import StepResult, run_step, run_steps
from engine.lab.models import Scenario, Step
from engine.lab.spec import LabSpec, check_expectations, load_lab
from engine.lab.timeline import TimelineEntry, from_event, since
from engine.loop import Monitor, TickReport
from engine.store import Store

MODES = ("observe", "approve", "execute")
DEMO_ACTOR = "demo"  # who approves in the audit log: the demo standing in for a human
VIOLATED = ("pending", "firing")
Emit = Callable[[TimelineEntry], None]
MonitorFactory = Callable[[LoadedConfig, Store], Monitor]


@dataclass(frozen=True)
class DemoSettings:
    interval: float = 1.0  # seconds between operator ticks (shorter than a config's, to be quick)
    settle: float = 3.0  # quiet seconds (nothing pending or firing) before the fault
    settle_timeout: float = 30.0  # give up when the lab is not quiet by then (a false alarm)


@dataclass(frozen=True)
class DemoResult:
    scenario: str
    ok: bool
    detected_s: float | None
    recovered_s: float | None
    actions: list[str]
    mode: str
    tickets_opened: int = 0  # tickets this run opened (muted ones too)
    diagnoses: int = 0  # diagnosis runs (runbook or model): one per incident
    reasons: tuple[str, ...] = ()  # why not ok (for the timeline; not part of the JSON line)
    store: Path | None = None  # this run's audit log (not part of the JSON line)

    def as_json(self) -> dict[str, Any]:
        """The fixed last line of `opctl demo` (other checks parse it)."""
        return {
            "scenario": self.scenario,
            "ok": self.ok,
            "detected_s": _round(self.detected_s),
            "recovered_s": _round(self.recovered_s),
            "actions": list(self.actions),
            "mode": self.mode,
            "tickets_opened": self.tickets_opened,
            "diagnoses": self.diagnoses,
        }


def lab_of(
    config_path: str | Path, env: Mapping[str, str] | None = None, *, lab: str | Path | None = None
) -> tuple[LoadedConfig, LabSpec]:
    """The config and the lab it names (`lab:`, or `lab` given here), or ConfigError."""
    env = os.environ if env is None else env
    loaded = load_config(config_path, env)
    if lab is None and loaded.config.lab is None:
        raise ConfigError(f"{config_path} declares no lab; add `lab: <path to a lab file>` to use `opctl lab` or `opctl demo`")
    spec = load_lab(Path(lab) if lab is not None else loaded.resolve(loaded.config.lab or ""), env)
    config = loaded.config
    mismatched = check_expectations(spec, [i.name for i in config.invariants], [a.name for a in config.actions])
    if mismatched:
        listing = "\n".join(p.as_text() for p in mismatched)
        raise ConfigError(f"the scenarios of {spec.file} do not fit {config_path}:\n{listing}")
    return loaded, spec


def run_demo(
    config_path: str | Path,
    scenario_name: str,
    *,
    mode: str = "execute",
    emit: Emit,
    env: Mapping[str, str] | None = None,
    settings: DemoSettings = DemoSettings(),
    clock: Callable[[], float] = time.time,
    monitor_for: MonitorFactory | None = None,
    until: Callable[[], bool] | None = None,
    lab: str | Path | None = None,
) -> DemoResult:
    """Play one scenario end to end; the lab is always brought down. Raises ConfigError/LabError
    for what prevents the demo from starting (bad config, unknown scenario, lab already up).

    `monitor_for(loaded, store)` builds the operator instead of the default `Monitor` (opctl eval
    injects its own diagnoser); `until()` true ends the watch early (once eval has its diagnosis);
    `lab` plays another lab file than the config's `lab:`."""
    if mode not in MODES:
        raise ConfigError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
    env = dict(os.environ if env is None else env)
    _, spec = lab_of(config_path, env, lab=lab)
    scenario = spec.scenario(scenario_name)
    started = clock()
    emit(TimelineEntry(None, "lab", f"starting lab '{spec.name}' ({len(spec.lab.processes)} processes, state in {spec.state_dir})"))
    status = supervisor.up(spec, env=env, clock=clock)
    try:
        emit(TimelineEntry(None, "lab", f"up and healthy in {clock() - started:.1f}s: " + ", ".join(
            f"{p.name}={p.endpoint}" if p.endpoint else p.name for p in status.processes)))
        # The operator reaches the lab through the variables the lab exports (ports may be moved).
        loaded = load_config(config_path, {**env, **status.exports})
        run = _DemoRun(loaded, spec, scenario, mode=mode, emit=emit, env=env, settings=settings, clock=clock,
                       monitor_for=monitor_for, until=until)
        try:
            return asyncio.run(run.play())
        except KeyboardInterrupt:
            emit(TimelineEntry(run.since_injection(), "stopped", "interrupted; bringing the lab down"))
            return run.result(["interrupted"])
    finally:
        stopped = supervisor.down(spec)
        emit(TimelineEntry(None, "lab", f"down ({len(stopped)} processes stopped)"))


def run_store_path(spec: LabSpec, scenario: str, now: float) -> Path:
    """A new store for one demo run: `<state_dir>/demos/<scenario>-<UTC time>.db`, never reused,
    so every run can be inspected afterwards (`opctl tickets list --store PATH`)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    directory = spec.state_dir / "demos"
    path = directory / f"{scenario}-{stamp}.db"
    count = 1
    while path.exists():
        count += 1
        path = directory / f"{scenario}-{stamp}-{count}.db"
    return path


# ------------------------------------------------------------------------------------ one run


@dataclass
class _Progress:
    injected_at: float | None = None
    detected_at: float | None = None
    diagnosed: bool = False  # the expected ticket, or the cause it is muted by or grouped under
    covered: bool = False  # the expected ticket is muted or grouped: another ticket's diagnosis is its
    diagnoses: int = 0
    recovered_at: float | None = None
    last_event: int = 0
    approved: set[int] = field(default_factory=set)


class _DemoRun:
    def __init__(
        self,
        loaded: LoadedConfig,
        spec: LabSpec,
        scenario: Scenario,
        *,
        mode: str,
        emit: Emit,
        env: Mapping[str, str],
        settings: DemoSettings,
        clock: Callable[[], float],
        monitor_for: MonitorFactory | None = None,
        until: Callable[[], bool] | None = None,
    ) -> None:
        self.loaded = loaded
        self.monitor_for = monitor_for
        self.until = until
        self.spec = spec
        self.scenario = scenario
        self.expect = scenario.expect
        self.mode = mode
        self.emit = emit
        self.env = env
        self.settings = settings
        self.clock = clock
        self.progress = _Progress()
        self.store_path = run_store_path(spec, scenario.name, clock())
        self.store = Store(self.store_path, clock=clock)
        self.closed = False
        self.monitor: Monitor | None = None  # set when the scenario starts playing

    def since_injection(self) -> float | None:
        return since(self.clock(), self.progress.injected_at)

    # ---------------------------------------------------------------- the phases

    async def play(self) -> DemoResult:
        self.store.set_mode(self.mode, actor=DEMO_ACTOR)
        if self.monitor_for is not None:
            monitor = self.monitor = self.monitor_for(self.loaded, self.store)
        else:
            monitor = self.monitor = Monitor(self.loaded, store=self.store, clock=self.clock)
        try:
            if not await self._steps("setup", self.scenario.setup):
                return self.result(["setup failed"])
            self._note("operator", f"watching {self.loaded.config.subject.name} every {self.settings.interval:g}s in {self.mode} mode; "
                                   f"diagnosis: {self.loaded.config.diagnosis.provider}; audit log {self.store_path}")
            problem = await self._settle(monitor)
            if problem is not None:
                return self.result([problem])
            # The fault's steps run while the operator keeps ticking: a scenario may take a store
            # down, wait, and bring it back, and the operator sees all of it as it happens.
            injection = asyncio.create_task(self._inject())
            try:
                reasons = await self._watch(monitor, injection)
            finally:
                if not injection.done():
                    injection.cancel()
                    self._note("inject", "the remaining inject steps are cancelled: the scenario is over")
                    with contextlib.suppress(asyncio.CancelledError):
                        await injection
            return self.result(reasons)
        finally:
            try:
                await self._steps("cleanup", self.scenario.cleanup)
            finally:
                await monitor.aclose()
                self.store.close()
                self.closed = True

    async def _settle(self, monitor: Monitor) -> str | None:
        """Tick until nothing is pending or firing for `settle` seconds; the problem otherwise."""
        started = self.clock()
        quiet_since: float | None = None
        ticks = 0
        while True:
            report = await self._tick(monitor)
            ticks += 1
            violated = self._violated(monitor)
            if violated or report.open_tickets:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = report.at
            if quiet_since is not None and ticks >= 2 and report.at - quiet_since >= self.settings.settle:
                self._note("settled", f"quiet for {report.at - quiet_since:.1f}s after {ticks} ticks: no invariant pending or firing")
                return None
            if self.clock() - started > self.settings.settle_timeout:
                listing = ", ".join(f"{inv}/{key}" for inv, key in violated) or f"{report.open_tickets} open ticket(s)"
                self._note("unsettled", f"the lab is not quiet after {self.settings.settle_timeout:g}s: {listing}")
                return f"the lab did not settle before the fault: {listing}"
            await self._pause(report)

    async def _inject(self) -> bool:
        """Run the fault's steps; it counts as injected when the first step that changes something
        starts (`wait`/`wait_until` steps before it are preconditions, e.g. a key must exist)."""
        for step in self.scenario.inject:
            if self.progress.injected_at is None and step.kind not in ("wait", "wait_until"):
                self.progress.injected_at = self.clock()
            result = await run_step(step, self.spec, env=self.env, clock=self.clock, observe=self._observe)
            self._report_steps("inject", [step], [result])
            if not result.ok:
                return False
        if self.progress.injected_at is None:  # only waits: the fault is whatever they waited for
            self.progress.injected_at = self.clock()
        return True

    async def _watch(self, monitor: Monitor, injection: asyncio.Task[bool]) -> list[str]:
        """Tick from the injection until the scenario's end state or its timeout; the reasons it failed."""
        started = self.clock()
        while True:
            report = await self._tick(monitor)
            self._approve_waiting()
            if injection.done() and not injection.result():
                return ["injection failed"]
            if self.until is not None and self.until():
                break
            if self.progress.detected_at is not None and self._done(monitor, injected=injection.done()):
                if self.mode == "observe" or await self._recovered_checks():
                    break
            if self.clock() >= (self.progress.injected_at or started) + self.scenario.timeout:
                self._note("timeout", f"the scenario did not reach its end state within {self.scenario.timeout:g}s")
                break
            await self._pause(report)
        return self._judge()

    # ---------------------------------------------------------------- per tick

    async def _tick(self, monitor: Monitor) -> TickReport:
        report = await monitor.tick()
        if self.progress.injected_at is not None and self.progress.detected_at is None and self._expected_violated(monitor):
            self.progress.detected_at = report.at
            self._note("DETECTED", f"{self.expect.fires}{'/' + self.expect.key if self.expect.key else ''} is violated",
                       at=report.at)
        for event in self.store.events(limit=10_000):
            if event.id <= self.progress.last_event:
                continue
            self.progress.last_event = event.id
            if event.kind == "diagnosis":
                self.progress.diagnoses += 1
                if self._is_expected(event.invariant, event.entity_key):
                    self.progress.diagnosed = True
            if event.kind in ("muted", "grouped") and self._is_expected(event.invariant, event.entity_key):
                self.progress.covered = True  # diagnosed through its cause's (or its incident's) ticket
            if self.progress.covered and self.progress.diagnoses:
                self.progress.diagnosed = True
            entry = from_event(event, self.progress.injected_at)
            if entry is not None and (self.progress.injected_at is not None or entry.kind != "obs ok"):
                self.emit(entry)
        return report

    async def _pause(self, report: TickReport) -> None:
        await asyncio.sleep(max(0.0, self.settings.interval - report.duration_s))

    def _approve_waiting(self) -> None:
        """Stand in for the human: approve what waits for approval on the scenario's tickets."""
        if self.mode == "observe":
            return
        for proposal in self.store.proposals(status="awaiting_approval", limit=1000):
            ticket = self.store.ticket(proposal.ticket_id)
            if proposal.id in self.progress.approved or ticket is None or not self._is_expected(ticket.invariant, ticket.entity_key):
                continue
            self.progress.approved.add(proposal.id)
            self.store.approve(proposal.id, actor=DEMO_ACTOR, reason="opctl demo stands in for the human operator")
            self._note("human", f"the demo approves proposal #{proposal.id} ({proposal.action}) as a human would with "
                                f"`opctl actions approve {proposal.id}`; it runs on the next tick after every gate is checked again")

    # ---------------------------------------------------------------- expectations

    def _violated(self, monitor: Monitor) -> list[tuple[str, str]]:
        return sorted(ident for ident, state in monitor.states.items() if state.status in VIOLATED)

    def _is_expected(self, invariant: str | None, key: str | None) -> bool:
        return invariant == self.expect.fires and (self.expect.key is None or key == self.expect.key)

    def _expected_violated(self, monitor: Monitor) -> bool:
        return any(self._is_expected(inv, key) for inv, key in self._violated(monitor))

    def _done(self, monitor: Monitor, *, injected: bool) -> bool:
        """The end state: in observe mode once the diagnosis and proposals are recorded; else
        recovered: the fault's steps are over, the expected action (if any) ran, and the
        recovered invariant has nothing pending or firing."""
        if self.mode == "observe":
            return self.progress.diagnosed and self._expected_proposals_recorded()
        if not injected or (self.expect.action is not None and self.expect.action not in self._actions()):
            return False
        if self.expect.reverts_done and self._armed_reverts():
            return False
        recovered = self.expect.recovered_invariant
        return not any(inv == recovered for inv, _ in self._violated(monitor))

    def _expected_proposals_recorded(self) -> bool:
        if self.expect.action is None:
            return True
        return any(p.action == self.expect.action for p in self.store.proposals(limit=1000))

    async def _recovered_checks(self) -> bool:
        if self.scenario.expect.recovered.check and not await self._steps("check", self.scenario.expect.recovered.check):
            return False
        self.progress.recovered_at = self.clock()
        self._note("RECOVERED", f"{self.expect.recovered_invariant} holds again"
                                + (" and the recovery checks pass" if self.expect.recovered.check else ""))
        return True

    def _armed_reverts(self) -> list[str]:
        """The actions whose revert has not run yet."""
        return [r.action for r in self.store.reverts() if r.status == "armed"]

    def _actions(self) -> list[str]:
        wanted = "proposed" if self.mode == "observe" else "succeeded"
        return [p.action for p in reversed(self.store.proposals(status=wanted, limit=1000))]

    def _judge(self) -> list[str]:
        reasons = []
        progress = self.progress
        if progress.detected_at is None:
            reasons.append(f"{self.expect.fires} never went pending or firing")
        executed = [x.action for x in self.store.executions(limit=1000)]
        if self.mode == "observe":
            if progress.detected_at is not None and not progress.diagnosed:
                reasons.append("the ticket was never diagnosed")
            if self.expect.action is not None and self.expect.action not in self._actions():
                reasons.append(f"{self.expect.action} was not proposed")
            if executed:
                reasons.append(f"observe mode executed {', '.join(executed)}")
        else:
            if progress.detected_at is not None and progress.recovered_at is None:
                reasons.append(f"{self.expect.recovered_invariant} did not recover")
            if self.expect.action is not None and self.expect.action not in self._actions():
                reasons.append(f"{self.expect.action} was not executed")
            if self.expect.reverts_done and self._armed_reverts():
                reasons.append(f"the revert of {', '.join(self._armed_reverts())} did not run")
        return reasons

    def result(self, reasons: list[str]) -> DemoResult:
        progress = self.progress
        actions = [] if self.closed else self._actions()
        tickets_opened, diagnoses = self._counts()
        ok = not reasons
        self._note("PASS" if ok else "FAIL", "the scenario's expectations held" if ok else "; ".join(reasons))
        return DemoResult(
            scenario=self.scenario.name,
            ok=ok,
            detected_s=None if progress.detected_at is None else since(progress.detected_at, progress.injected_at),
            recovered_s=None if progress.recovered_at is None else since(progress.recovered_at, progress.injected_at),
            actions=actions,
            mode=self.mode,
            tickets_opened=tickets_opened,
            diagnoses=diagnoses,
            reasons=tuple(reasons),
            store=self.store_path,
        )

    def _counts(self) -> tuple[int, int]:
        """Tickets opened and diagnosis runs, from the run's store (opened again when an
        interrupted run already closed it: the result line is printed either way)."""
        store = Store(self.store_path, clock=self.clock) if self.closed else self.store
        try:
            return len(store.tickets(limit=1_000_000)), store.count_events("diagnosis")
        finally:
            if store is not self.store:
                store.close()

    # ---------------------------------------------------------------- helpers

    async def _steps(self, phase: str, steps: list[Step]) -> bool:
        if not steps:
            return True
        results = await run_steps(steps, self.spec, env=self.env, clock=self.clock, observe=self._observe)
        return self._report_steps(phase, steps, results)

    async def _observe(self) -> dict[str, Any]:
        """The config's observations now, for `wait_until: {expr}` steps (failed ones left out)."""
        assert self.monitor is not None
        results = await self.monitor.observer.observe_all()
        return {name: r.value for name, r in results.items() if r.ok}

    def _report_steps(self, phase: str, steps: list[Step], results: list[StepResult]) -> bool:
        for result in results:
            self.emit(TimelineEntry(since(result.started_at + result.elapsed_s, self.progress.injected_at), phase if result.ok else f"{phase} FAIL",
                                    f"{result.detail} ({result.elapsed_s:.1f}s)"))
        return bool(results) and results[-1].ok and len(results) == len(steps)

    def _note(self, kind: str, text: str, *, at: float | None = None) -> None:
        self.emit(TimelineEntry(since(self.clock() if at is None else at, self.progress.injected_at), kind, text))


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
