"""Reaching the moment of diagnosis: the real engine runs until it diagnoses the case's ticket.

`Capture` is the diagnoser the engine's actor calls. Every other ticket gets the runbook (so the
engine goes on as usual); the case's ticket, the first time it is diagnosed, becomes an `At` and
is handed to `on_moment`, which makes the eval's runs there and then (while the lab is still in
its fault) and returns the diagnosis the engine goes on with. Prompts are rendered with the
config's own mode (what production would say); the engine itself runs in observe mode with a
recording executor, so nothing is ever sent to the system.

- frozen cases: the Monitor on a virtual clock over fixtures (engine.testing.fixtures), in a
  temporary store;
- live cases: `opctl demo`'s run of the lab scenario (engine.lab.demo) in observe mode, ended as
  soon as the moment has passed;
- replayed live cases: the recorded moment, with a fresh store (see engine.evals.runner).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from engine.act import RecordingExecutor
from engine.config.validate import LoadedConfig
from engine.diagnose import Diagnoser, Diagnosis, DiagnosisRequest
from engine.errors import OpctlError
from engine.evals.load import CaseSpec
from engine.evals.recording import moment_of
from engine.evals.runs import At, NoCache, OnMoment, RunLedger, with_provider
from engine.lab.timeline import TimelineEntry
from engine.loop import Monitor
from engine.observe import Observer
from engine.store import Store
from engine.testing.fixtures import FixtureObserver, VirtualClock

EVAL_ACTOR = "opctl-eval"


class Capture:
    """The engine's diagnoser during an eval (see the module docstring)."""

    def __init__(self, case: CaseSpec, loaded: LoadedConfig, store: Store, observe: Any, on_moment: OnMoment,
                 clock: Callable[[], float]) -> None:
        self.case = case
        self.loaded = loaded
        self.store = store
        self.observe = observe
        self.on_moment = on_moment
        self.clock = clock
        self.monitor: Monitor | None = None
        self.done = False
        self.background = Diagnoser(with_provider(loaded, "runbook", None), observe=observe, cache=NoCache(),
                                    ledger=RunLedger(), clock=clock, env={})

    def wants(self, request: DiagnosisRequest) -> bool:
        ticket = self.case.ticket
        return (not self.done and request.invariant.name == ticket.invariant
                and (ticket.key is None or request.key == ticket.key))

    async def diagnose(self, request: DiagnosisRequest, *, mode: str) -> Diagnosis:
        if not self.wants(request):
            return await self.background.diagnose(request, mode=mode)
        self.done = True
        assert self.monitor is not None
        state = self.monitor.states.get((request.invariant.name, request.key))
        now = self.clock()
        moment = moment_of(request, now=now, mode=self.loaded.config.mode,
                           firing=state is not None and state.status == "firing", prev=dict(self.monitor.previous))
        answer = await self.on_moment(At(self.case, self.loaded, request, moment, self.store, self.observe))
        return answer if answer is not None else await self.background.diagnose(request, mode=mode)

    async def aclose(self) -> None:
        await self.background.aclose()


async def frozen_moment(case: CaseSpec, loaded: LoadedConfig, on_moment: OnMoment) -> str | None:
    """Tick over the fixtures until the case's ticket is diagnosed; the problem when it never is."""
    assert case.case.frozen is not None
    clock = VirtualClock(case.start)
    observer = FixtureObserver(case.timelines, clock, case.tick)
    with tempfile.TemporaryDirectory(prefix="opctl-eval-") as tmp:
        store = Store(Path(tmp) / "eval.db", clock=clock)
        try:
            store.set_mode("observe", actor=EVAL_ACTOR)
            capture = Capture(case, loaded, store, observer.observe, on_moment, clock)
            monitor = Monitor(loaded, store=store, observer=observer, clock=clock,  # type: ignore[arg-type]
                              executor=RecordingExecutor(), diagnoser=capture)  # type: ignore[arg-type]
            capture.monitor = monitor
            try:
                step = 0
                while not capture.done:
                    offset = step * case.tick
                    if offset > case.case.frozen.within:
                        return _never(case, store, f"within {case.case.frozen.within:g}s of virtual time")
                    clock.now = case.start + offset
                    try:
                        await monitor.tick()
                    except OpctlError as exc:
                        return f"the engine failed at {offset:g}s: {exc}"
                    step += 1
            finally:
                await monitor.aclose()
        finally:
            store.close()
    return None


def live_moment(case: CaseSpec, config_path: Path, on_moment: OnMoment, *, env: Mapping[str, str],
                emit: Callable[[TimelineEntry], None]) -> str | None:
    """Play the case's lab scenario until the case's ticket is diagnosed; the problem when it never is."""
    from engine.lab.demo import run_demo

    assert case.case.live is not None
    captures: list[Capture] = []

    def monitor_for(loaded: LoadedConfig, store: Store) -> Monitor:
        observer = Observer(loaded)
        capture = Capture(case, loaded, store, observer.observe, on_moment, time.time)
        monitor = Monitor(loaded, store=store, observer=observer, executor=RecordingExecutor(),
                          diagnoser=capture)  # type: ignore[arg-type]
        capture.monitor = monitor
        captures.append(capture)
        return monitor

    result = run_demo(config_path, case.case.live.scenario, mode="observe", emit=emit, env=env,
                      monitor_for=monitor_for, until=lambda: bool(captures) and captures[0].done)
    if captures and captures[0].done:
        return None
    reasons = "; ".join(result.reasons) or "the scenario ended"
    return f"the engine never diagnosed {case.ticket.invariant}{'/' + case.key if case.key else ''}: {reasons}"


def _never(case: CaseSpec, store: Store, within: str) -> str:
    tickets = ", ".join(f"{t.invariant}/{t.entity_key}" if t.entity_key else t.invariant for t in store.tickets(limit=100)) or "none"
    wanted = f"{case.ticket.invariant}{'/' + case.key if case.key else ''}"
    return f"the engine never diagnosed {wanted} {within}; tickets opened: {tickets}"
