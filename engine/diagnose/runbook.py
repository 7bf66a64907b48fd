"""The runbook provider: deterministic and offline.

It proposes the invariant's `runbook` entries in order, each entry's params evaluated by CEL over
the current observations, `item`, `key` and `now`. The summary is the ticket's message and the
root cause the invariant's description: the runbook knows what its author wrote, nothing more,
so its confidence is a fixed RUNBOOK_CONFIDENCE. An entry whose params cannot be evaluated is
not proposed: it is in `unevaluated` (the actor records it as a refused proposal with the
reason) and in the evidence; it never raises.
"""

from __future__ import annotations

import json
from typing import Any

from engine.config.models import RunbookEntry
from engine.config.validate import LoadedConfig
from engine.diagnose.types import (
    MAX_ACTIONS,
    MAX_ITEMS,
    MAX_TEXT,
    Diagnosis,
    DiagnosisRequest,
    RecommendedAction,
    UnevaluatedAction,
)
from engine.errors import ExpressionError
from engine.expr import compile_expr, to_python
from engine.redact import Redactor
from engine.trim import trim

# A runbook entry is its author's standing advice, not a diagnosis of this data: middling.
RUNBOOK_CONFIDENCE = 0.5
ENTITY_EVIDENCE_BUDGET = 1_000


def runbook_diagnosis(
    loaded: LoadedConfig, request: DiagnosisRequest, now: float, *, fallback_reason: str | None = None
) -> Diagnosis:
    """The invariant's runbook as a Diagnosis (provider `runbook`)."""
    invariant = request.invariant
    redactor = Redactor(loaded.secrets)
    env: dict[str, Any] = dict(request.observations)
    env.update(item=request.item, key=request.key, now=now, vars=loaded.config.variable_values())
    where = f"`{request.key}`" if request.key else "the whole cluster"
    evidence = [f"invariant `{invariant.name}` ({invariant.expr}) is false for {where}"]
    if request.item is not None:
        entity = json.dumps(trim(redactor.value(request.item), ENTITY_EVIDENCE_BUDGET), sort_keys=True, default=str)
        evidence.append(f"the entity as observed: {entity}")
    actions: list[RecommendedAction] = []
    unevaluated: list[UnevaluatedAction] = []
    for index, entry in enumerate(invariant.runbook):
        params, problem = _params(entry, env)
        if problem is not None:
            evidence.append(f"runbook entry {index + 1} ({entry.action}) left out: {problem}")
            unevaluated.append(UnevaluatedAction(action=entry.action, reason=_bounded(redactor.text(
                f"runbook entry {index + 1}: {problem}"))))
            continue
        if len(actions) == MAX_ACTIONS:
            evidence.append(f"runbook entry {index + 1} ({entry.action}) left out: at most {MAX_ACTIONS} actions are proposed")
            continue
        reason = entry.reason or f"runbook of invariant {invariant.name}"
        actions.append(RecommendedAction(action=entry.action, params=params, reason=_bounded(reason)))
    if not invariant.runbook:
        evidence.append(f"invariant `{invariant.name}` has no runbook entries: a human should look")
    return Diagnosis(
        summary=_bounded(redactor.text(request.ticket.message) or f"invariant {invariant.name} is violated for {where}"),
        root_cause=_bounded(invariant.description or f"invariant {invariant.name} does not hold ({invariant.expr})"),
        confidence=RUNBOOK_CONFIDENCE,
        evidence=[_bounded(redactor.text(e)) for e in evidence][:MAX_ITEMS],
        alternatives_considered=[],
        recommended_actions=actions,
        provider="runbook",
        model=None,
        fallback_reason=fallback_reason,
        unevaluated=unevaluated,
    )


def _params(entry: RunbookEntry, env: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    params: dict[str, Any] = {}
    for name, source in entry.params.items():
        try:
            params[name] = to_python(compile_expr(source).evaluate(env))
        except ExpressionError as exc:
            return {}, f"param '{name}' ({source}): {exc}"
    return params, None


def _bounded(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 20] + " [cut]"
