"""The input schema of the `submit_diagnosis` tool, generated from the declared actions.

Each recommended action is one branch of an `anyOf`: `action` is a `const` naming a declared
action and `params` is that action's own params schema, so the model is shown exactly what the
gate will accept. The schema is a guide for the model, not the check: the gate validates every
recommendation again (an undeclared action or bad params is refused there, with a reason).

An action's params schema is embedded in place; its local references (`#/...`) are rewritten to
point at the embedded copy, and its `$schema`/`$id` are dropped so they cannot change how the
rest of the document resolves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engine.config.models import Action
from engine.diagnose.types import MAX_ACTIONS, MAX_ITEMS, MAX_TEXT

SUBMIT_TOOL = "submit_diagnosis"


def _text(description: str, min_length: int = 0) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "maxLength": MAX_TEXT, "description": description}
    if min_length:
        schema["minLength"] = min_length
    return schema


def submission_schema(actions: Sequence[Action]) -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) object for the `submit_diagnosis` tool input."""
    recommended: dict[str, Any] = {
        "type": "array",
        "maxItems": MAX_ACTIONS if actions else 0,
        "description": (
            "Declared actions to run, most useful first; empty when none fits (say in the summary what a human should check)."
            if actions
            else "No actions are declared: always empty."
        ),
    }
    if actions:
        base = "#/properties/recommended_actions/items/anyOf"
        recommended["items"] = {
            "anyOf": [_action_branch(action, f"{base}/{i}/properties/params") for i, action in enumerate(actions)]
        }
    return {
        "type": "object",
        "additionalProperties": False,
        "required": [
            "summary",
            "root_cause",
            "confidence",
            "evidence",
            "alternatives_considered",
            "recommended_actions",
        ],
        "properties": {
            "summary": _text("One or two sentences: what is wrong.", 1),
            "root_cause": _text("The most likely root cause, and why.", 1),
            "confidence": {
                "type": "number",
                "minimum": 0,
                "maximum": 1,
                "description": "How sure you are of the root cause, 0 to 1.",
            },
            "evidence": {
                "type": "array",
                "maxItems": MAX_ITEMS,
                "items": _text("An observed fact supporting the root cause."),
            },
            "alternatives_considered": {
                "type": "array",
                "maxItems": MAX_ITEMS,
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["hypothesis", "why_rejected"],
                    "properties": {
                        "hypothesis": _text("Another possible cause.", 1),
                        "why_rejected": _text("What in the observations rules it out."),
                    },
                },
            },
            "recommended_actions": recommended,
        },
    }


def _action_branch(action: Action, pointer: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": f"{action.description} (risk: {action.risk})",
        "additionalProperties": False,
        "required": ["action", "params", "reason"],
        "properties": {
            "action": {"const": action.name},
            "params": _embedded(action.params, pointer),
            "reason": _text("Why this action addresses the root cause."),
        },
    }


def _embedded(schema: Any, pointer: str) -> Any:
    """A copy of a params schema that stays correct when placed at `pointer` in another document."""
    if not isinstance(schema, dict):
        return schema
    copy = {k: v for k, v in schema.items() if k not in ("$schema", "$id")}
    return _rebase(copy, pointer)


def _rebase(value: Any, pointer: str) -> Any:
    if isinstance(value, list):
        return [_rebase(v, pointer) for v in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key == "$ref" and isinstance(item, str) and item.startswith("#"):
            out[key] = pointer + item[1:]
        elif key in ("const", "enum", "default", "examples"):
            out[key] = item  # instance values, not schemas: never rewritten
        else:
            out[key] = _rebase(item, pointer)
    return out
