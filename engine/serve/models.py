"""The JSON the console's API takes and gives (pydantic: they make its OpenAPI document)."""

from __future__ import annotations

import dataclasses
from dataclasses import MISSING
from typing import Any, Literal, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from engine.silences import Matcher
from engine.store import Event, Execution, Incident, Proposal, Ticket

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


def _record_model(record: type, name: str, *, omit: tuple[str, ...] = (), **extra: Any) -> type[Out]:
    """The response model of a store record, from its dataclass (so a new column is never left
    out), with `entity_key` named `key` as in the CLI's JSON (engine.view.record_json)."""
    hints = get_type_hints(record)
    fields: dict[str, Any] = {
        ("key" if f.name == "entity_key" else f.name): (hints[f.name], ... if f.default is MISSING else f.default)
        for f in dataclasses.fields(record)
        if f.name not in omit
    }
    return create_model(name, __base__=Out, **fields, **extra)


TicketOut = _record_model(
    Ticket, "TicketOut", omit=("snapshot",),
    silenced_by=(int | None, Field(None, description="The active silence that mutes it, if any.")),
)  # fmt: skip
EventOut = _record_model(
    Event, "EventOut",
    label=(str | None, Field(None, description="What happened, in a word (as the CLI's timeline says).")),
    text=(str | None, Field(None, description="The sentence the CLI's timeline prints.")),
)  # fmt: skip
ProposalOut = _record_model(Proposal, "ProposalOut")
IncidentOut = _record_model(
    Incident, "IncidentOut",
    tickets=(list[TicketOut], Field(description="Its tickets, oldest first (the lead's page holds the diagnosis).")),  # type: ignore[valid-type]
)  # fmt: skip
ExecutionOut = _record_model(Execution, "ExecutionOut")


class TokensOut(Out):
    input: int
    output: int


class TicketDetailOut(TicketOut):  # type: ignore[valid-type,misc]
    snapshot: dict[str, Any]
    diagnosis: dict[str, Any] | None = Field(description="The last diagnosis event's data (summary, evidence, ...).")
    events: list[EventOut]  # type: ignore[valid-type]
    proposals: list[ProposalOut]  # type: ignore[valid-type]
    executions: list[ExecutionOut]  # type: ignore[valid-type]
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
    proposal: ProposalOut  # type: ignore[valid-type]
    message: str


class KillResultOut(Out):
    kill: KillOut
    message: str
