"""The eval case language (`subjects/<name>/evals/*.yaml`), as pydantic models that refuse unknown keys.

An eval file names its config and lists cases under `evals:`. A case is either `live` (a lab
scenario of the config's lab, run for real) or `frozen` (observations as `opctl test` fixtures
over virtual time); either way the engine runs until it diagnoses the case's ticket, and that
diagnosis is scored against `expect`: required facts (`root_cause`), forbidden facts
(`must_not`) and the acceptable actions, which must also pass the real action gate.

Fixtures are parsed by `engine.testing.fixtures` (the same forms as `opctl test`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from engine.config.models import Duration

# Fields of a submission a phrase fact may search (see engine.evals.score.texts).
TextField = Literal["summary", "root_cause", "evidence", "alternatives", "reasons"]
DEFAULT_FIELDS: tuple[TextField, ...] = ("summary", "root_cause")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Fact(_Strict):
    """One fact a diagnosis states: `any` of a few phrasings found in its text, or a `cel`
    predicate over its structured fields (`summary`, `root_cause`, `confidence`, `evidence`,
    `alternatives`, `actions`: a list of {action, params, reason})."""

    name: str | None = Field(None, description="A short label shown in reports (default: the first phrasing or the CEL).",
                             examples=["the dead node is named"])
    any: list[str] | None = Field(
        None, min_length=1,
        description="Acceptable phrasings; the fact holds when one is found (case-insensitive, whole words at its ends, "
                    "whitespace-insensitive).",
        examples=[["node2", "node 2"]],
    )
    in_: list[TextField] = Field(
        list(DEFAULT_FIELDS), alias="in", min_length=1,
        description="Where phrasings are searched: summary, root_cause, evidence, alternatives (hypotheses), "
                    "reasons (of recommended actions).",
        examples=[["root_cause"]],
    )
    cel: str | None = Field(
        None, min_length=1, description="A CEL predicate over the submission's structured fields; true = the fact holds.",
        examples=['actions.exists(a, a.action == "deregister_node" && a.params.node_id == "node2")'],
    )

    @field_validator("any")
    @classmethod
    def _phrases(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and any(not p.strip() for p in value):
            raise ValueError("a phrasing is empty; write the words a correct diagnosis uses")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> Fact:
        if (self.any is None) == (self.cel is None):
            raise ValueError("a fact needs exactly one of `any` (phrasings) or `cel` (a predicate)")
        if self.cel is not None and "in_" in self.model_fields_set:
            raise ValueError("`in` applies to phrasings (`any`), not to a `cel` predicate")
        return self

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        return self.cel if self.cel is not None else " | ".join(self.any or ())


class AcceptableAction(_Strict):
    """A recommended action that counts as right: this action, with at least these params."""

    action: str = Field(min_length=1, examples=["deregister_node"])
    params: dict[str, Any] = Field(
        default_factory=dict, description="Params the recommendation must carry (others may be there too).",
        examples=[{"node_id": "node2"}],
    )


class Expect(_Strict):
    """What a correct diagnosis of the case contains, and what it must not."""

    root_cause: list[Fact] = Field(min_length=1, description="Required facts: every one must hold.")
    must_not: list[Fact] = Field(
        default_factory=list, description="Forbidden facts (a wrong root cause, a harmful action): none may hold."
    )
    actions: list[AcceptableAction] = Field(
        default_factory=list,
        description="Acceptable actions: every recommended action must be one of them and pass the real gate. "
                    "Empty: the correct diagnosis recommends no action.",
    )
    no_action_ok: bool | None = Field(
        None, description="Whether recommending nothing is acceptable (default: only when `actions` is empty).",
        examples=[False],
    )
    judge: str | None = Field(
        None, description="For `--judge`: the correct diagnosis in a sentence or two, for the judge model to compare "
                          "against (default: built from the facts and actions).",
        examples=["node2 crashed and stopped heartbeating; deregister it."],
    )

    @property
    def nothing_ok(self) -> bool:
        return not self.actions if self.no_action_ok is None else self.no_action_ok


class TicketRef(_Strict):
    """The ticket to diagnose: an invariant of the config and, for a `for_each` one, the entity key."""

    invariant: str = Field(min_length=1, examples=["node_heartbeat"])
    key: str | None = Field(None, description='The entity key ("" or absent for a cluster-wide invariant).',
                            examples=["node2"])

    @field_validator("key", mode="before")
    @classmethod
    def _key_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class Live(_Strict):
    """Run a scenario of the config's lab for real and diagnose at the moment the engine does."""

    scenario: str = Field(min_length=1, description="A scenario of the config's lab file.", examples=["kill_node"])
    ticket: TicketRef | None = Field(None, description="Default: the scenario's `expect.fires` (and `key`).",
                                     examples=[{"invariant": "node_heartbeat", "key": "node2"}])


class Frozen(_Strict):
    """Observations over virtual time, as `opctl test` fixtures; the engine runs until it diagnoses `ticket`."""

    ticket: TicketRef
    tick: Duration | None = Field(None, description="Time between ticks; default: the config's interval.")
    start: str | float = Field(
        "2026-01-01T00:00:00Z", description="Unix seconds or RFC 3339 time of the first tick.", examples=["2026-01-01T00:00:00Z"]
    )
    within: Duration = Field(300.0, description="Give up when the ticket is not diagnosed by then (virtual time).",
                             examples=["2m"])
    fixtures: dict[str, Any] = Field(description="One per observation of the config (the forms of `opctl test`).",
                                     examples=[{"redis_ping": {"value": "PONG"}}])


class EvalCase(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$", max_length=80,
                      description="Unique in the file; names its recordings.", examples=["kill_node"])
    description: str = Field("", description="What happens, and what makes the case hard.")
    tags: list[str] = Field(
        default_factory=list, description="Free labels, e.g. distractor kinds: two_symptoms, misleading_metric, missing_observation.",
        examples=[["two_symptoms"]],
    )
    live: Live | None = None
    frozen: Frozen | None = None
    expect: Expect

    @model_validator(mode="after")
    def _one_kind(self) -> EvalCase:
        if (self.live is None) == (self.frozen is None):
            raise ValueError("a case needs exactly one of `live` (a lab scenario) or `frozen` (fixtures)")
        return self

    @property
    def kind(self) -> Literal["live", "frozen"]:
        return "live" if self.live is not None else "frozen"


class EvalFile(_Strict):
    """Eval cases of one subject: how well a provider diagnoses them (`opctl eval`)."""

    config: str = Field(min_length=1, description="The subject's config, relative to this file.",
                        examples=["../../../configs/ratelimiter.yaml"])
    evals: list[EvalCase] = Field(min_length=1, description="The cases.")
