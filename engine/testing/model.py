"""The test file language (`opctl test`), as pydantic models that refuse unknown keys.

A test file names its config, a tick and a start time, gives one fixture per observation over
virtual time, recorded diagnoses (answering in place of a model), and lists cases (`at` a
time: `expect` states, tickets, prompts, actions, counters; `then` approve proposals or switch
the mode, as a human would, before the next tick) and, for `--property`, properties of
invariants. Fixtures are parsed by
`engine.testing.fixtures` (their forms are easier to explain by hand than through a union).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from engine.config.models import Duration

Status = Literal["ok", "pending", "firing", "error", "unknown"]  # error/unknown: this tick's sample
# `open` is every status but resolved; verifying (an action ran) and escalated (humans decide) are finer
TicketStatus = Literal["open", "verifying", "escalated", "resolved"]
ActionStatus = Literal[
    "proposed", "refused", "awaiting_approval", "approved", "rejected", "expired", "cancelled", "executing", "executed", "failed"
]
Mode = Literal["observe", "approve", "execute"]
REQUEST_FIELDS = ("kind", "target", "method", "path", "query", "headers", "body", "command", "line")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class TicketExpect(_Strict):
    """One expected ticket; only the fields written are compared (unless `exact: true`)."""

    invariant: str | None = None
    key: str | None = Field(None, description="The entity key; \"\" for a cluster-wide invariant.")
    status: TicketStatus | None = None
    severity: Literal["critical", "warning", "info"] | None = None
    labels: dict[str, str] | None = None
    message: str | None = None
    message_contains: str | None = None
    occurrences: int | None = None
    held: bool | None = None

    @field_validator("key", mode="before")
    @classmethod
    def _key_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class PromptExpect(_Strict):
    """Text the rendered diagnosis prompt of one ticket must (not) contain."""

    invariant: str
    key: str = ""
    contains: list[str] = Field(default_factory=list)
    not_contains: list[str] = Field(default_factory=list)

    @field_validator("key", mode="before")
    @classmethod
    def _key_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class ActionExpect(_Strict):
    """One expected proposal (its current status); `params` and `request` match partially unless
    `exact: true`."""

    action: str
    status: ActionStatus | None = Field(
        None, description="proposed (observe mode), awaiting_approval, executed (the recorder got its request), refused, ..."
    )
    params: dict[str, Any] | None = None
    invariant: str | None = None
    key: str | None = None
    gate: str | None = Field(None, description="For refused actions: the gate that refused (guard, cooldown, budget, ...).")
    reason_contains: str | None = Field(None, description="Text of the last decision's note; for refused actions the gate's reason.")
    request: dict[str, Any] | None = Field(
        None, description="For executed actions: fields of the request sent (method, path, query, headers, body, command, line)."
    )

    @field_validator("key", mode="before")
    @classmethod
    def _key_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class Expect(_Strict):
    invariants: dict[str, Status | dict[str | int, Status]] = Field(
        default_factory=dict,
        description=(
            "Per invariant: its overall status (the worst entity), or a map of entity key to status. "
            "`error` (the expression failed to evaluate) and `unknown` (an observation it reads failed) "
            "are what the entity's evaluation gave this tick; ok, pending and firing its held status."
        ),
    )
    tickets: list[TicketExpect] | None = Field(
        None, description="Every ticket so far (open and resolved); `[]` asserts there is none."
    )
    exact: bool = Field(
        False,
        description="Tickets, actions and per-entity maps must match completely: no other entries, no other fields.",
    )
    observation_errors: dict[str, bool | str] = Field(
        default_factory=dict,
        description="Per observation at this tick: true (failed), false (succeeded) or text its error contains.",
    )
    counters: dict[str, float] = Field(
        default_factory=dict,
        description="opctl's own counters, e.g. tickets_opened_total or 'tickets_opened_total{invariant=\"x\"}'.",
    )
    prompts: list[PromptExpect] = Field(default_factory=list)
    actions: list[ActionExpect] | None = None
    not_actions: list[str] = Field(default_factory=list, description="Actions that must not have been proposed.")


class Then(_Strict):
    """What a human does after the case's tick and checks; the next tick sees it."""

    approve: list[str] = Field(
        default_factory=list, description="Approve every proposal of these actions that awaits approval (`opctl approve`)."
    )
    mode: Mode | None = Field(None, description="Switch the mode from now on (`opctl mode`).")


class Case(_Strict):
    name: str = Field(min_length=1)
    at: Duration = Field(description="Offset from `start`; a multiple of `tick`. Checked after the tick at that time.")
    expect: Expect = Field(default_factory=lambda: Expect())
    then: Then | None = None


class RecordedDiagnosis(_Strict):
    """A diagnosis the replay provider answers for tickets of this invariant (and key)."""

    invariant: str
    key: str | None = None
    model: str | None = Field(None, description="Copied to the diagnosis, as if that model had answered.")
    diagnosis: dict[str, Any]

    @field_validator("key", mode="before")
    @classmethod
    def _key_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class Property(_Strict):
    """For `--property`: the invariant fires (after `for`) exactly when `fires_iff` holds."""

    name: str = Field(min_length=1)
    invariant: str
    fires_iff: str = Field(min_length=1, description="CEL over the generated observations.")
    assume: str | None = Field(None, description="CEL: only generated data for which this holds is checked.")
    examples: int = Field(200, ge=1, le=100_000, description="How many generated examples to try.")


class TestFile(_Strict):
    __test__ = False  # not a pytest class

    config: str = Field(min_length=1, description="The config under test, relative to this file.")
    tick: Duration | None = Field(None, description="Time between ticks; default: the config's interval.")
    start: str | float = Field(0.0, description="Unix seconds or RFC 3339 time of the first tick.")
    mode: Mode | None = Field(None, description="Overrides the config's mode for this test.")
    fixtures: dict[str, Any] = Field(default_factory=dict, description="One per observation of the config.")
    diagnoses: list[RecordedDiagnosis] = Field(default_factory=list)
    shapes: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="JSON Schemas for observations the config gives no `shape`."
    )
    cases: list[Case] = Field(default_factory=list)
    properties: list[Property] = Field(default_factory=list)
