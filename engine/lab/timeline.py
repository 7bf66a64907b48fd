"""The demo's live timeline: what happened, in words, with seconds since the fault was injected.

    entry = from_event(event, injected_at)     # a store Event → TimelineEntry, or None (noise)
    line = entry.line()                        # "  +6.2s  detected   node_heartbeat/node2 ..."

Entries come from two places: the demo itself (lab up, settled, injected, approved, recovered,
cleanup, lab down) and the operator's own audit log (the store's events: pending, firing,
diagnosis, proposals, gate refusals, executions, verification), so the timeline shows exactly
what the engine recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.observe.values import one_line
from engine.store import Event

MAX_TEXT = 200  # characters of one line's text; details stay in `opctl tickets show`


@dataclass(frozen=True)
class TimelineEntry:
    """One line of the timeline; `at_s` is seconds since injection (negative before, None: no clock)."""

    at_s: float | None
    kind: str
    text: str

    def line(self) -> str:
        when = "" if self.at_s is None else f"{self.at_s:+.1f}s"
        return f"{when:>8}  {self.kind:<10} {self.text}"

    def as_json(self) -> dict[str, Any]:
        return {"at_s": None if self.at_s is None else round(self.at_s, 2), "kind": self.kind, "text": self.text}


def since(at: float, injected_at: float | None) -> float | None:
    return None if injected_at is None else at - injected_at


def from_event(event: Event, injected_at: float | None) -> TimelineEntry | None:
    """The timeline line of one engine event; None for events that only add noise."""
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
            described = ("executed", f"{action} {proposal}: {data.get('request')} → ok in {data.get('duration_s', 0):.3f}s")
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
    if described is None:
        return None
    kind, text = described
    return TimelineEntry(since(event.at, injected_at), kind, _short(text))


def _subject(event: Event) -> str:
    if event.invariant is None:
        return "-"
    return f"{event.invariant}/{event.entity_key}" if event.entity_key else event.invariant


def _params(data: dict[str, Any]) -> str:
    params = data.get("params")
    if not params:
        return ""
    return "(" + ", ".join(f"{k}={v}" for k, v in params.items()) + ")"


def _short(text: str) -> str:
    return one_line(text, MAX_TEXT)
