"""Running a test file's cases: the real Monitor on a virtual clock, fixtures in place of I/O.

Ticks run at start, start+tick, ... up to the last selected case; after the tick at a case's
`at`, the case's expectations are compared with the engine's states, tickets, observations,
counters, prompts and actions (a fresh SQLite store in a temporary directory holds tickets,
proposals and executions), then its `then:` runs (approvals, a mode change) for the next tick.
The whole pipeline runs: a `RecordingExecutor` replaces executors (nothing is sent) and the
diagnoser answers offline (recorded diagnoses, else the runbook; see engine.testing.diagnoses).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from engine.act import RecordingExecutor
from engine.diagnose import DiagnosisRequest, render_prompts
from engine.errors import OpctlError, StoreError
from engine.loop import Monitor
from engine.store import Store
from engine.testing.actions import action_records
from engine.testing.diagnoses import offline_diagnoser
from engine.testing.expect import Observed, check
from engine.testing.fixtures import FixtureObserver, VirtualClock
from engine.testing.load import LoadedTest
from engine.testing.model import Case, Then

STORE_FILE = "opctl-test.db"
HUMAN = "opctl-test"  # the actor of approvals and mode changes a case makes


@dataclass(frozen=True)
class CaseResult:
    """The outcome of one case or property; `failures` are readable blocks (empty: passed)."""

    file: str
    name: str
    kind: Literal["case", "property"]
    at: float | None
    failures: tuple[str, ...]
    duration_s: float

    @property
    def passed(self) -> bool:
        return not self.failures


async def run_cases(test: LoadedTest, cases: Sequence[Case]) -> list[CaseResult]:
    """Every case of `cases` (in time order, ties in file order), against one engine run."""
    if not cases:
        return []
    ordered = sorted(cases, key=lambda c: c.at)
    clock = VirtualClock(test.start)
    observer = FixtureObserver(test.timelines, clock, test.tick)
    recorder = RecordingExecutor()  # stands in for every executor: nothing is sent anywhere
    with tempfile.TemporaryDirectory(prefix="opctl-test-") as tmp:
        store = Store(Path(tmp) / STORE_FILE, clock=clock)
        try:
            diagnoser = offline_diagnoser(
                test.loaded, test.spec.diagnoses, workdir=Path(tmp), store=store, observe=observer.observe, clock=clock
            )
            monitor = Monitor(
                test.loaded, store=store, observer=observer, clock=clock,  # type: ignore[arg-type]
                executor=recorder, diagnoser=diagnoser,
            )
            try:
                return await _run(test, ordered, monitor, store, observer, recorder, clock)
            finally:
                await monitor.aclose()
        finally:
            store.close()


async def _run(
    test: LoadedTest,
    ordered: Sequence[Case],
    monitor: Monitor,
    store: Store,
    observer: FixtureObserver,
    recorder: RecordingExecutor,
    clock: VirtualClock,
) -> list[CaseResult]:
    file = str(test.file)
    results: list[CaseResult] = []
    index = 0
    last = round(ordered[-1].at / test.tick)
    for step in range(last + 1):
        clock.now = test.start + step * test.tick
        started = time.perf_counter()
        try:
            await monitor.tick()
        except OpctlError as exc:
            reason = f"the engine failed at tick {step} ({step * test.tick:g}s): {exc}"
            return results + [CaseResult(file, c.name, "case", c.at, (reason,), 0.0) for c in ordered[index:]]
        while index < len(ordered) and round(ordered[index].at / test.tick) == step:
            case = ordered[index]
            try:
                observed = Observed(
                    states=dict(monitor.states),
                    samples={(name, key): kind for name, rep in monitor.last_reports.items()
                             for kind, keys in (("error", rep.errors), ("unknown", rep.unknown)) for key in keys},
                    invariant_names=[inv.name for inv in test.loaded.config.invariants],
                    inputs_missing=frozenset(name for name, rep in monitor.last_reports.items() if rep.inputs_missing),
                    tickets=sorted(store.tickets(limit=1_000_000), key=lambda t: t.id),
                    observations=observer.last,
                    registry=monitor.metrics.registry,
                    prompt_for=_prompt_renderer(test, store, observer, clock.now),
                    actions=action_records(store, recorder.requests),
                )
                failures = check(case.expect, observed)
                if case.then is not None:
                    failures += _then(case.then, store)
            except OpctlError as exc:
                failures = [f"the engine's records could not be read: {exc}"]
            results.append(CaseResult(file, case.name, "case", case.at, tuple(failures), time.perf_counter() - started))
            index += 1
    return results


def _then(then: Then, store: Store) -> list[str]:
    """Do what the case's `then:` says, as a human would between ticks; what could not be done."""
    failures = []
    for action in then.approve:
        waiting = [p for p in store.proposals(status="awaiting_approval", limit=1_000_000) if p.action == action]
        if not waiting:
            listing = ", ".join(f"{p.action} ({p.status})" for p in store.proposals(limit=1_000_000)) or "none"
            failures.append(f"then.approve: no proposal of {action} awaits approval; proposals so far: {listing}")
        for proposal in sorted(waiting, key=lambda p: p.id):
            try:
                store.approve(proposal.id, actor=HUMAN, reason="approved by the test case")
            except StoreError as exc:
                failures.append(f"then.approve: {exc}")
    if then.mode is not None:
        store.set_mode(then.mode, actor=HUMAN)
    return failures


def _prompt_renderer(test: LoadedTest, store: Store, observer: FixtureObserver, now: float) -> Callable[[str, str], str]:
    """(invariant, key) -> the system and ticket prompts of that entity's newest ticket, joined."""

    def render(invariant: str, key: str) -> str:
        tickets = [t for t in store.tickets(limit=1_000_000) if t.invariant == invariant and t.entity_key == key]
        if not tickets:
            raise LookupError(f"there is no ticket of {invariant}[{key!r}] to render a prompt for")
        ticket = tickets[0]  # newest first
        inv = test.loaded.config.invariant(invariant, key)
        assert inv is not None  # the loader checked the name
        request = DiagnosisRequest(
            ticket=ticket,
            invariant=inv,
            item=ticket.snapshot.get("item"),
            key=key,
            observations={name: r.value for name, r in observer.last.items() if r.ok},
            events=tuple(store.events(ticket.id)),  # oldest first
            similar_tickets=tuple(t for t in store.tickets(limit=1_000_000) if t.invariant == invariant and t.id != ticket.id),
        )
        try:
            system, user = render_prompts(test.loaded, request, test.loaded.config.mode, now)
        except OpctlError as exc:
            raise LookupError(f"the prompt could not be rendered: {exc}") from None
        return system + "\n" + user

    return render
