"""What the acting mode makes of a proposal that passed every gate: recorded (observe), waiting
for a human (approve, or an action with `approval: required`), or approved to run now (execute)."""

from __future__ import annotations

from dataclasses import dataclass

from engine.config.models import Action


@dataclass(frozen=True)
class ModeDecision:
    status: str  # proposed | awaiting_approval | approved
    detail: str
    expires_at: float | None = None  # for awaiting_approval


def by_mode(mode: str, action: Action, *, approval_ttl: float, now: float) -> ModeDecision:
    if mode == "observe":
        return ModeDecision("proposed", "observe mode: recorded only")
    if mode == "approve" or action.approval == "required":
        why = "approve mode" if mode == "approve" else f"action {action.name} requires approval"
        return ModeDecision("awaiting_approval", why, now + approval_ttl)
    return ModeDecision("approved", "execute mode")
