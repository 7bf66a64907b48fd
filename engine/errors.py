"""The one exception tree of the engine.

    OpctlError
     ├── ConfigError                 a config or test file is wrong (user's mistake)
     ├── ExpressionError
     │    ├── ExpressionCompileError CEL source does not parse
     │    └── ExpressionEvalError    CEL evaluation failed (missing key, bad types, ÷0)
     ├── ObservationError            an observation could not be made
     ├── StoreError                  the ticket store failed
     │    ├── StaleStatus            a compare-and-set found another status (another writer won)
     │    └── NotLeader              a fenced write while this replica does not hold the lease
     ├── DiagnosisError              a diagnosis provider failed
     ├── ActionError
     │    ├── ActionRefused          a gate refused an action (reason recorded)
     │    └── ActionFailed           an executor ran and failed
     └── LabError                    a local lab could not be started, stopped or driven

Messages are full sentences that say what is wrong and, where possible, how to fix it.
"""

from __future__ import annotations


class OpctlError(Exception):
    """Root of every error the engine raises on purpose."""


class ConfigError(OpctlError):
    """A config (or test file) cannot be used; the message names the place."""


class ExpressionError(OpctlError):
    """A CEL expression failed to compile or evaluate."""


class ExpressionCompileError(ExpressionError):
    """CEL source does not parse. `column` is 1-based within the expression, when known."""

    def __init__(self, message: str, *, source: str, column: int | None = None) -> None:
        super().__init__(message)
        self.source = source
        self.column = column


class ExpressionEvalError(ExpressionError):
    """Evaluating a compiled CEL expression failed."""


class ObservationError(OpctlError):
    """An observation could not be made (network, timeout, bad payload)."""


class StoreError(OpctlError):
    """The SQLite ticket store failed."""


class StaleStatus(StoreError):
    """A compare-and-set on a proposal's or execution's status found another status: another
    process (a human's reject, the kill switch, another replica) changed it first."""

    def __init__(self, message: str, *, status: str) -> None:
        super().__init__(message)
        self.status = status


class NotLeader(StoreError):
    """A write of the engine was refused: this replica's fencing token is not the current
    lease's (it never held it, or another replica took over while it was paused)."""


class DiagnosisError(OpctlError):
    """A diagnosis provider failed."""


class ActionError(OpctlError):
    """Base of action gating and execution errors."""


class ActionRefused(ActionError):
    """A gate refused an action; `gate` names which one."""

    def __init__(self, gate: str, reason: str) -> None:
        super().__init__(f"{gate}: {reason}")
        self.gate = gate
        self.reason = reason


class ActionFailed(ActionError):
    """An executor ran the action and it failed."""


class LabError(OpctlError):
    """A lab could not be started, stopped or driven; the message names the process and why."""
