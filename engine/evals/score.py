"""The deterministic scorer: one diagnosis against one case's `expect`.

A run is **correct** when every required fact holds, no forbidden fact holds and its actions
are acceptable. Its **actions are acceptable** when every recommended action matches an
acceptable one (same action, at least the written params) and passed the real action gate at
the moment of diagnosis, and it recommends something unless recommending nothing is acceptable.

Phrasings are matched case-insensitively on whitespace-normalised text, as whole words at their
ends ("node2" is not found in "node20"). CEL facts see the submission's structured fields.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine.diagnose.types import Submission
from engine.errors import ExpressionError
from engine.evals.model import AcceptableAction, Expect, Fact
from engine.expr import compile_expr, to_python


@dataclass(frozen=True)
class GateOutcome:
    """What the real gate said about one recommended action (gate None: it passed)."""

    action: str
    params: dict[str, Any]
    gate: str | None = None
    reason: str = ""

    @property
    def passed(self) -> bool:
        return self.gate is None

    def as_json(self) -> dict[str, Any]:
        return {"action": self.action, "params": self.params, "gate": self.gate, "reason": self.reason}


@dataclass(frozen=True)
class FactResult:
    label: str
    holds: bool
    error: str | None = None  # a CEL fact that could not be evaluated holds not


@dataclass(frozen=True)
class Score:
    facts: tuple[FactResult, ...]
    forbidden: tuple[FactResult, ...]
    actions_ok: bool
    action_notes: tuple[str, ...]

    @property
    def missing(self) -> list[str]:
        return [f.label for f in self.facts if not f.holds]

    @property
    def violated(self) -> list[str]:
        return [f.label for f in self.forbidden if f.holds]

    @property
    def correct(self) -> bool:
        return not self.missing and not self.violated and self.actions_ok

    def as_json(self) -> dict[str, Any]:
        return {
            "correct": self.correct,
            "actions_ok": self.actions_ok,
            "missing_facts": self.missing,
            "forbidden_facts": self.violated,
            "action_notes": list(self.action_notes),
            "fact_errors": [f"{f.label}: {f.error}" for f in (*self.facts, *self.forbidden) if f.error],
        }


def score(expect: Expect, submission: Submission, gate: Sequence[GateOutcome]) -> Score:
    facts = tuple(fact_result(f, submission) for f in expect.root_cause)
    forbidden = tuple(fact_result(f, submission) for f in expect.must_not)
    ok, notes = actions_acceptable(expect, gate)
    return Score(facts, forbidden, ok, tuple(notes))


def fact_result(fact: Fact, submission: Submission) -> FactResult:
    if fact.any is not None:
        text = normalise(" \n ".join(texts(submission, fact.in_)))
        return FactResult(fact.label, any(_phrase(p).search(text) for p in fact.any))
    assert fact.cel is not None
    try:
        value = to_python(compile_expr(fact.cel).evaluate(fact_env(submission)))
    except ExpressionError as exc:
        return FactResult(fact.label, False, str(exc))
    if not isinstance(value, bool):
        return FactResult(fact.label, False, f"the predicate gave {value!r}, not true or false")
    return FactResult(fact.label, value)


def actions_acceptable(expect: Expect, gate: Sequence[GateOutcome]) -> tuple[bool, list[str]]:
    notes = []
    if not gate and not expect.nothing_ok:
        notes.append("recommended no action; expected one of " + ", ".join(a.action for a in expect.actions))
    for outcome in gate:
        if not any(_matches(a, outcome) for a in expect.actions):
            notes.append(f"{outcome.action} {outcome.params} is not an acceptable action")
        elif not outcome.passed:
            notes.append(f"{outcome.action} was refused by the gate ({outcome.gate}): {outcome.reason}")
    return not notes, notes


def texts(submission: Submission, fields: Sequence[str]) -> list[str]:
    """The free text of the chosen fields of a submission."""
    out: list[str] = []
    for field in fields:
        if field == "summary":
            out.append(submission.summary)
        elif field == "root_cause":
            out.append(submission.root_cause)
        elif field == "evidence":
            out.extend(submission.evidence)
        elif field == "alternatives":
            out.extend(a.hypothesis for a in submission.alternatives_considered)
        elif field == "reasons":
            out.extend(a.reason for a in submission.recommended_actions)
    return out


def fact_env(submission: Submission) -> dict[str, Any]:
    return {
        "summary": submission.summary,
        "root_cause": submission.root_cause,
        "confidence": submission.confidence,
        "evidence": list(submission.evidence),
        "alternatives": [a.model_dump() for a in submission.alternatives_considered],
        "actions": [a.model_dump() for a in submission.recommended_actions],
    }


def normalise(text: str) -> str:
    return " ".join(text.lower().split())


def _phrase(phrase: str) -> re.Pattern[str]:
    words = normalise(phrase)
    head = r"(?<![a-z0-9])" if words[:1].isalnum() else ""
    tail = r"(?![a-z0-9])" if words[-1:].isalnum() else ""
    return re.compile(head + re.escape(words) + tail)


def _matches(acceptable: AcceptableAction, outcome: GateOutcome) -> bool:
    return acceptable.action == outcome.action and all(
        name in outcome.params and _same(outcome.params[name], value) for name, value in acceptable.params.items()
    )


def _same(actual: Any, expected: Any) -> bool:
    # True == 1 in Python; a param written `true` must not accept a submitted 1 (or the reverse)
    if isinstance(actual, bool) or isinstance(expected, bool):
        return actual is expected
    return bool(actual == expected)
