"""The values diagnosis takes and gives: one request type, one output type for every provider.

A model's submission is untrusted input: `Submission` is what a provider (or the model through
the `submit_diagnosis` tool) must produce, validated by pydantic with unknown keys refused and
every text bounded; `Diagnosis` adds where it came from. Whether a recommended action is declared
and its params are valid is NOT decided here: the action gate checks and records that.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from engine.config.models import Invariant
from engine.errors import DiagnosisError
from engine.store import Event, Ticket

# Bounds on what a model may submit, shared with the tool's JSON Schema (engine.diagnose.schema).
MAX_TEXT = 4000
MAX_ITEMS = 20
MAX_ACTIONS = 10


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RecommendedAction(_Frozen):
    action: str = Field(min_length=1, max_length=128)
    params: dict[str, Any] = Field(default_factory=dict)
    reason: str = Field(max_length=MAX_TEXT)


class Alternative(_Frozen):
    hypothesis: str = Field(min_length=1, max_length=MAX_TEXT)
    why_rejected: str = Field(max_length=MAX_TEXT)


class Submission(_Frozen):
    """What a diagnosis says: the part a model writes (the `submit_diagnosis` tool's input)."""

    summary: str = Field(min_length=1, max_length=MAX_TEXT)
    root_cause: str = Field(min_length=1, max_length=MAX_TEXT)
    confidence: float = Field(ge=0.0, le=1.0)
    evidence: list[Annotated[str, Field(max_length=MAX_TEXT)]] = Field(max_length=MAX_ITEMS)
    alternatives_considered: list[Alternative] = Field(max_length=MAX_ITEMS)
    recommended_actions: list[RecommendedAction] = Field(max_length=MAX_ACTIONS)


class UnevaluatedAction(_Frozen):
    """A runbook entry whose params could not be evaluated on this ticket's data: recorded as a
    refused proposal (gate `params`) with the reason, never silently dropped."""

    action: str = Field(min_length=1, max_length=128)
    reason: str = Field(max_length=MAX_TEXT)


class Diagnosis(Submission):
    """The one output type of every provider.

    Attributes:
        provider: who answered (after any fallback: a failed claude call answered by the
            runbook says `runbook` and carries `fallback_reason`).
        model: the model that answered, None for runbook and match-list replays.
        input_tokens / output_tokens / tool_calls: spent on this diagnosis, failed attempts
            included (tokens spent before a fallback are still spent).
        fallback_reason: why the configured provider did not answer, when it did not.
        unevaluated: runbook entries whose params failed to evaluate (runbook provider only).
    """

    provider: Literal["claude", "runbook", "replay"]
    model: str | None = None
    input_tokens: int = Field(0, ge=0)
    output_tokens: int = Field(0, ge=0)
    tool_calls: int = Field(0, ge=0)
    fallback_reason: str | None = None
    unevaluated: list[UnevaluatedAction] = Field(default_factory=list)


@dataclass(frozen=True)
class DiagnosisRequest:
    """One ticket to diagnose, with what the engine currently knows about it.

    Attributes:
        item: the entity's element of `for_each` (None for a cluster-wide invariant).
        key: the entity key ("" cluster-wide).
        observations: current values of all observations (the prompt uses the ones the
            invariant references, trimmed; the runbook binds them all in CEL).
        events: the ticket's events, oldest first (the prompt keeps the most recent).
        similar_tickets: earlier tickets of the same invariant, newest first.
    """

    ticket: Ticket
    invariant: Invariant
    item: Any
    key: str
    observations: Mapping[str, Any]
    events: Sequence[Event] = ()
    similar_tickets: Sequence[Ticket] = ()


class DiagnosisCache(Protocol):
    def get(self, fingerprint: str) -> Diagnosis | None: ...

    def put(self, fingerprint: str, diagnosis: Diagnosis) -> None: ...


class TokenLedger(Protocol):
    def spent_since(self, since: float) -> int: ...

    def record(
        self, ticket_id: int, provider: str, model: str | None, input_tokens: int, output_tokens: int, at: float
    ) -> None: ...


@dataclass
class Spend:
    """What one provider attempt has spent so far (kept on its diagnosis, fallback or not)."""

    input_tokens: int = 0
    output_tokens: int = 0
    tool_calls: int = 0
    model_calls: int = 0


class ProviderFailure(DiagnosisError):
    """A provider gave no diagnosis; `reason` says why and `spend` what the attempt cost."""

    def __init__(self, reason: str, spend: Spend | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.spend = spend if spend is not None else Spend()
