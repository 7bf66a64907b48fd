"""Running a test file's cases: the real Monitor on a virtual clock, fixtures in place of I/O.

Ticks run at start, start+tick, ... up to the last selected case; after the tick at a case's
`at`, the case's expectations are compared with the engine's states, tickets, observations and
counters (a fresh SQLite store in a temporary directory holds the tickets).
"""

from __future__ import annotations

import importlib.util
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from engine.errors import OpctlError
from engine.loop import Monitor
from engine.store import Store
from engine.testing.expect import Observed, check
from engine.testing.fixtures import FixtureObserver, VirtualClock
from engine.testing.load import LoadedTest
from engine.testing.model import Case

STORE_FILE = "opctl-test.db"


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


def unavailable_features() -> dict[str, str]:
    """Pipeline stages this build lacks, with the message a case that needs them fails with."""
    missing = {}
    if importlib.util.find_spec("engine.diagnose.prompt") is None:
        missing["prompts"] = "prompt assertions need engine.diagnose.prompt (render_prompts), which this build does not have yet"
    # engine.act exists as a package, but Monitor does not run the gate yet: there are no action
    # records to compare with until the loop proposes/executes actions.
    missing["actions"] = "actions assertions need the action gate in the engine loop (Monitor does not run engine.act yet)"
    if importlib.util.find_spec("engine.diagnose.replay") is None:
        missing["diagnoses"] = "recorded diagnoses need engine.diagnose (the replay provider), which this build does not have yet"
    return missing


async def run_cases(test: LoadedTest, cases: Sequence[Case]) -> list[CaseResult]:
    """Every case of `cases` (in time order, ties in file order), against one engine run."""
    file = str(test.file)
    if not cases:
        return []
    missing = unavailable_features()
    ordered = sorted(cases, key=lambda c: c.at)
    results: list[CaseResult] = []
    if test.spec.diagnoses and "diagnoses" in missing:
        results.append(CaseResult(file, "recorded diagnoses", "case", None, (missing["diagnoses"],), 0.0))
    clock = VirtualClock(test.start)
    observer = FixtureObserver(test.timelines, clock, test.tick)
    with tempfile.TemporaryDirectory(prefix="opctl-test-") as tmp:
        store = Store(Path(tmp) / STORE_FILE, clock=clock)
        try:
            monitor = Monitor(test.loaded, store=store, observer=observer, clock=clock)  # type: ignore[arg-type]
            index = 0
            last = round(ordered[-1].at / test.tick)
            for step in range(last + 1):
                clock.now = test.start + step * test.tick
                started = time.perf_counter()
                try:
                    await monitor.tick()
                except OpctlError as exc:
                    reason = f"the engine failed at tick {step} ({step * test.tick:g}s): {exc}"
                    results += [CaseResult(file, c.name, "case", c.at, (reason,), 0.0) for c in ordered[index:]]
                    return results
                while index < len(ordered) and round(ordered[index].at / test.tick) == step:
                    case = ordered[index]
                    observed = Observed(
                        states=dict(monitor.states),
                        invariant_names=[inv.name for inv in test.loaded.config.invariants],
                        tickets=sorted(store.tickets(limit=1_000_000), key=lambda t: t.id),
                        observations=observer.last,
                        registry=monitor.metrics.registry,
                        prompt_for=_prompt_renderer(test, store, observer, clock.now) if "prompts" not in missing else None,
                        actions=None,
                        missing=missing,
                    )
                    failures = tuple(check(case.expect, observed))
                    results.append(CaseResult(file, case.name, "case", case.at, failures, time.perf_counter() - started))
                    index += 1
        finally:
            store.close()
    return results


def _prompt_renderer(test: LoadedTest, store: Store, observer: FixtureObserver, now: float) -> Callable[[str, str], str]:
    """(invariant, key) -> the system and ticket prompts of that entity's newest ticket, joined."""
    from engine.diagnose.prompt import render_prompts
    from engine.diagnose.types import DiagnosisRequest

    def render(invariant: str, key: str) -> str:
        tickets = [t for t in store.tickets(limit=1_000_000) if t.invariant == invariant and t.entity_key == key]
        if not tickets:
            raise LookupError(f"there is no ticket of {invariant}[{key!r}] to render a prompt for")
        ticket = tickets[0]  # newest first
        inv = test.loaded.config.invariant(invariant)
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
