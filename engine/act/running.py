"""Running one cleared proposal: its execution recorded before the request and after it.

    run = await runner.run(proposal, cleared)        # begin_execution, then the executor
    if isinstance(run, Refusal): ...                 # the start's re-check refused: nothing was sent
    runner.finish(run, ticket=..., ticket_event=...) # finish_execution, values redacted

The actor runs remediations with it and the reverter runs reverts; what each does with the
ticket afterwards is its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from engine.act.executor import ExecutionOutcome, Executor
from engine.act.gate import Cleared
from engine.observe.values import one_line
from engine.redact import Redactor
from engine.store import Execution, Proposal, Refusal, Store, TicketAct


@dataclass(frozen=True)
class Run:
    execution: Execution
    outcome: ExecutionOutcome
    duration_s: float
    finished_at: float


class Runner:
    def __init__(self, store: Store, executor: Executor, redactor: Redactor, clock: Callable[[], float]) -> None:
        self.store = store
        self.executor = executor
        self.redactor = redactor
        self.clock = clock

    async def run(self, proposal: Proposal, cleared: Cleared) -> Run | Refusal:
        request = cleared.request
        execution = self.store.begin_execution(
            proposal.id, request=self.redactor.value(request.as_json()), at=self.clock(), rule=cleared.rule
        )
        if isinstance(execution, Refusal):
            return execution
        started = time.monotonic()
        try:
            outcome = await self.executor.execute(request)
        except Exception as exc:  # an executor defect is this execution's failure, not the tick's
            outcome = ExecutionOutcome(False, "executor failed", "", error=f"{type(exc).__name__}: {one_line(str(exc))}")
        return Run(execution, outcome, time.monotonic() - started, self.clock())

    def finish(
        self,
        run: Run,
        *,
        ticket: TicketAct | None = None,
        ticket_event: tuple[str, Mapping[str, Any]] | None = None,
        arm_revert: bool = False,
    ) -> Execution:
        outcome = run.outcome
        return self.store.finish_execution(
            run.execution.id, ok=outcome.ok, duration_s=run.duration_s, response=self.redactor.text(outcome.response),
            error=None if outcome.error is None else self.redactor.text(outcome.error), at=run.finished_at, ticket=ticket,
            ticket_event=ticket_event, details=self.redactor.value({"status": outcome.status, "endpoints": [r.as_json() for r in outcome.results]}),
            arm_revert=arm_revert,
        )  # fmt: skip
