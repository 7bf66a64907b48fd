"""The JSON the console's API takes and gives (pydantic: they make its OpenAPI document)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from engine.silences import Matcher

Mode = Literal["observe", "approve", "execute"]


class Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Problem(Out):
    detail: str


class ModeOut(Out):
    mode: str
    source: Literal["config", "override"]
    config_mode: str
    actor: str | None = None
    at: float | None = None


class KillOut(Out):
    on: bool
    reason: str | None = None
    actor: str | None = None
    at: float | None = None


class StatusOut(Out):
    subject: str
    mode: ModeOut
    kill: KillOut
    leader: str = Field(description="Which replica leads, or 'single replica'.")
    open_tickets: int
    active_silences: int
    last_event_id: int = Field(description="The newest audit event's id: what the live stream watches.")
    now: float


class EntityStateOut(Out):
    key: str
    status: Literal["pending", "firing"]
    active_since: float | None = None
    fired_at: float | None = None
    last_error: str | None = None


class InvariantOut(Out):
    name: str
    severity: str
    state: Literal["ok", "pending", "firing"] = Field(description="The worst state of its entities.")
    entities: list[EntityStateOut] = Field(description="Entities not ok (ok ones are not stored).")
    open_tickets: int


class TicketOut(Out):
    id: int
    invariant: str
    key: str
    labels: dict[str, str]
    severity: str
    status: str
    held: bool
    first_seen: float
    last_seen: float
    resolved_at: float | None
    occurrences: int
    message: str
    previous_ticket_id: int | None
    next_attempt_at: float | None = None
    parked: str | None = None
    verify_deadline: float | None = None
    verify_proposal_id: int | None = None
    silenced_by: int | None = Field(None, description="The active silence that mutes it, if any.")


class EventOut(Out):
    id: int
    ticket_id: int | None
    invariant: str | None
    key: str | None
    kind: str
    actor: str
    at: float
    data: dict[str, Any]
    label: str | None = Field(None, description="What happened, in a word (as the CLI's timeline says).")
    text: str | None = Field(None, description="The sentence the CLI's timeline prints.")


class ProposalOut(Out):
    id: int
    ticket_id: int
    action: str
    params: dict[str, Any]
    reason: str
    source: str
    status: str
    gate: str | None
    detail: str | None
    created_at: float
    updated_at: float
    expires_at: float | None
    decided_by: str | None


class ExecutionOut(Out):
    id: int
    proposal_id: int
    ticket_id: int
    action: str
    key: str
    status: str
    request: dict[str, Any]
    started_at: float
    finished_at: float | None
    duration_s: float | None
    response: str | None
    error: str | None


class TokensOut(Out):
    input: int
    output: int


class TicketDetailOut(TicketOut):
    snapshot: dict[str, Any]
    diagnosis: dict[str, Any] | None = Field(description="The last diagnosis event's data (summary, evidence, ...).")
    events: list[EventOut]
    proposals: list[ProposalOut]
    executions: list[ExecutionOut]
    tokens: TokensOut


class PromptOut(Out):
    system: str
    user: str


class MatcherModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Literal["invariant", "key", "severity"]
    value: str = Field(max_length=1000)
    regex: bool = False

    @model_validator(mode="after")
    def _compiles(self) -> MatcherModel:
        Matcher(self.name, self.value, self.regex)  # ValueError for a regex that does not compile
        return self


class SilenceOut(Out):
    id: int
    matchers: list[MatcherModel]
    starts_at: float
    ends_at: float
    created_by: str
    comment: str
    created_at: float
    state: Literal["pending", "active", "expired"]


class Comment(BaseModel):
    model_config = ConfigDict(extra="forbid")
    comment: str = Field("", max_length=2000, description="Recorded in the audit log.")


class ModeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Mode | None = Field(description="The mode to set; null drops the override (the config's applies).")


class SilenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    matchers: list[MatcherModel] = Field(min_length=1, max_length=20)
    starts_at: float | None = Field(None, ge=0, le=1e11, description="Unix seconds; default now.")
    duration_s: float = Field(gt=0, le=366 * 86400, description="How long it lasts from its start.")
    comment: str = Field(min_length=1, max_length=2000)


class ProposalDecisionOut(Out):
    proposal: ProposalOut
    message: str


class KillResultOut(Out):
    kill: KillOut
    message: str
