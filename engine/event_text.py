"""What one audit event says, in words: shared by the demo's timeline and the live view.

    describe(event)   # ("executed", "deregister_node #1: DELETE /v1/nodes/node2 → HTTP 204, ok in 0.012s")

The sentences are built from the store's own events (pending, firing, diagnosis, proposals, gate
refusals, approvals, executions with their HTTP status, verification, escalation), so what an
operator reads is exactly what the engine recorded. They are not escaped for a terminal:
printing goes through engine.safe_text.
"""

from __future__ import annotations

from typing import Any

from engine.store import Event

ACTION_KINDS = (
    "proposed", "refused", "awaiting_approval", "approved", "rejected", "expired", "cancelled", "succeeded", "failed",
    "verified", "recovered", "effect_confirmed", "revert_armed", "revert_waiting", "reverted", "revert_given_up",
    "escalated", "verification_failed",
)  # fmt: skip


def describe(event: Event) -> tuple[str, str] | None:
    """(what happened, in a word; the sentence) of one engine event; None for noise."""
    data = event.data
    subject = _subject(event)
    action = data.get("action")
    proposal = f"#{data['proposal']}" if data.get("proposal") is not None else ""
    described: tuple[str, str] | None
    match event.kind:
        case "pending":
            described = ("pending", f"{subject} violated (pending: waiting out `for`)")
        case "firing":
            described = ("firing", f"{subject} firing: ticket opened")
        case "cleared":
            described = ("cleared", f"{subject} held again before firing")
        case "resolved":
            described = ("resolved", f"{subject} holds again: ticket resolved")
        case "diagnosis":
            recommended = ", ".join(r.get("action", "?") for r in data.get("recommended_actions", [])) or "no action"
            provider = data.get("provider", "?") + (" (cached)" if data.get("cached") else "")
            fallback = f"; fell back: {data['fallback_reason']}" if data.get("fallback_reason") else ""
            described = ("diagnosed", f"{subject} by {provider}: {data.get('summary', '')} → recommends {recommended}{fallback}")
        case "proposed":
            described = ("proposed", f"{action}{_params(data)} {proposal} (observe mode: recorded, not run)")
        case "refused":
            described = ("refused", f"{action}{_params(data)} {proposal} by gate {data.get('gate')}: {data.get('detail', '')}")
        case "awaiting_approval":
            described = ("proposed", f"{action}{_params(data)} {proposal} awaits approval ({data.get('detail', '')})")
        case "approved":
            who = "" if event.actor == "engine" else f" by {event.actor}"
            described = ("approved", f"{action} {proposal}{who}")
        case "rejected" | "expired" | "cancelled":
            described = (event.kind, f"{action} {proposal}: {data.get('detail') or data.get('reason') or ''}")
        case "succeeded":
            status = f"{data['status']}, " if str(data.get("status", "")).startswith("HTTP") else ""
            described = ("executed", f"{action} {proposal}: {data.get('request')} → {status}ok in {data.get('duration_s', 0):.3f}s")
        case "failed":
            error = data.get("error") or data.get("response") or ""
            described = ("failed", f"{action} {proposal}: {data.get('request')} → {error}")
        case "verifying":
            described = ("verifying", f"{subject}: waiting for the invariant to hold after {action}")
        case "verified":
            described = ("verified", f"{subject} holds again after {action} {proposal}, whose effect is confirmed: credited")
        case "recovered":
            described = ("recovered", f"{subject} holds again after {action} {proposal}, whose effect was not confirmed: not credited")
        case "effect_confirmed":
            described = ("effect", f"{subject}: {action} {proposal} did what it is for ({data.get('expr')})")
        case "revert_armed":
            described = ("revert", f"{subject}: {action}{_params(data)} is undone once the ticket resolves")
        case "revert_waiting":
            described = ("revert", f"{subject}: the undoing of {action} waits: {data.get('reason', '')}")
        case "reverted":
            described = ("reverted", f"{subject}: {action}{_params(data)} undone: {data.get('reason', '')}")
        case "revert_given_up":
            described = ("no revert", f"{subject}: {action}{_params(data)} is not undone: {data.get('reason', '')}")
        case "escalated" | "verification_failed" | "no_action" | "parked" | "diagnosis_failed":
            described = (event.kind.replace("_", " "), f"{subject}: {data.get('reason', '')}")
        case "observation_error":
            described = ("obs error", f"{data.get('observation')}: {data.get('reason')}")
        case "observation_recovered":
            described = ("obs ok", f"{data.get('observation')} answers again")
        case _:
            described = None
    return described


def _subject(event: Event) -> str:
    if event.invariant is None:
        return "-"
    return f"{event.invariant}/{event.entity_key}" if event.entity_key else event.invariant


def _params(data: dict[str, Any]) -> str:
    params = data.get("params")
    if not params:
        return ""
    return "(" + ", ".join(f"{k}={v}" for k, v in params.items()) + ")"
