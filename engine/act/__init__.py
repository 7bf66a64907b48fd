"""Acting safely: the gate, the executors, verification (see engine.act.actor for the stage).

The model proposes, opctl decides: every recommended action passes `ActionGate` (kill switch,
ticket firing, declared, params, guard on fresh observations, cooldown, budgets, one in flight,
attempts), then the mode decides whether it is recorded, waits for a human, or runs through an
`Executor`. Everything is recorded in the store's event log.
"""

from __future__ import annotations

from engine.act.actor import ActReport, Actor
from engine.act.executor import EndpointResult, ExecutionOutcome, Executor, RecordingExecutor, TargetExecutor
from engine.act.gate import GATES, ActionGate, Cleared, Refusal
from engine.act.records import StoreDiagnosisCache, StoreTokenLedger
from engine.act.request import ActionRequest, render_request

__all__ = [
    "GATES",
    "ActReport",
    "ActionGate",
    "ActionRequest",
    "Actor",
    "Cleared",
    "EndpointResult",
    "ExecutionOutcome",
    "Executor",
    "RecordingExecutor",
    "Refusal",
    "StoreDiagnosisCache",
    "StoreTokenLedger",
    "TargetExecutor",
    "render_request",
]
