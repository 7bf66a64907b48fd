"""Which audit events are notifications, and what they say (the payload every receiver formats).

`id` is stable (subject and audit event id): a receiver de-duplicates on it, also across the
retries and restarts of one notification."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.store import Event, Store

# audit event kind -> notification event (engine.config.models.NOTIFY_EVENTS)
NOTIFIED_KINDS = {
    "incident_opened": "opened",
    "incident_resolved": "resolved",
    "awaiting_approval": "approval_needed",
    "succeeded": "executed",
    "escalated": "escalated",
    "kill_switch": "kill_switch",
}


def notification_of(
    event: Event, store: Store, *, subject: str, approve_command: Callable[[int], str]
) -> tuple[str, dict[str, Any]] | None:
    """(notification event, payload) for an audit event, or None when it is not one."""
    name = NOTIFIED_KINDS.get(event.kind)
    if name is None:
        return None
    payload: dict[str, Any] = {"id": f"{subject}:{event.id}", "event": name, "subject": subject, "at": event.at}
    ticket = store.ticket(event.ticket_id) if event.ticket_id is not None else None
    if ticket is not None and ticket.muted_by is not None:
        return None  # muted: recorded only
    if ticket is not None and ticket.incident_id is not None:
        incident = store.incident(ticket.incident_id)
        if incident is not None:
            members = store.incident_tickets(incident.id)
            payload["incident"] = {"id": incident.id, "group": incident.group_key, "opened_at": incident.opened_at,
                                   "resolved_at": incident.resolved_at, "lead_ticket": incident.lead_ticket_id}
            payload["tickets"] = [_ticket(t) for t in members]
    elif ticket is not None:
        payload["tickets"] = [_ticket(ticket)]
    if "proposal" in event.data:
        proposal = store.proposal(int(event.data["proposal"]))
        if proposal is not None:
            payload["proposal"] = {"id": proposal.id, "action": proposal.action, "params": proposal.params,
                                   "status": proposal.status, "reason": proposal.reason}
            if name == "approval_needed":
                payload["approve"] = approve_command(proposal.id)
    if name == "kill_switch":
        payload["kill_switch"] = {"on": bool(event.data.get("on")), "by": event.actor, "reason": event.data.get("reason", "")}
    payload["summary"] = summary(name, payload, ticket.message if ticket else None)
    return name, payload


def summary(name: str, payload: dict[str, Any], message: str | None) -> str:
    """One line for people (the Slack text, the webhook's `summary`)."""
    subject = payload["subject"]
    incident = payload.get("incident", {}).get("id")
    where = f"{subject} incident #{incident}" if incident else subject
    if name == "opened":
        return f"[{where}] opened: {message}"
    if name == "resolved":
        return f"[{where}] resolved: {message}"
    if name == "approval_needed":
        proposal = payload.get("proposal", {})
        return f"[{where}] {proposal.get('action')} needs approval: {payload.get('approve')}"
    if name == "executed":
        return f"[{where}] executed {payload.get('proposal', {}).get('action')}"
    if name == "escalated":
        return f"[{where}] escalated: a human must look ({message})"
    state = "on" if payload.get("kill_switch", {}).get("on") else "off"
    return f"[{subject}] the kill switch is {state}"


def _ticket(t: Any) -> dict[str, Any]:
    return {"id": t.id, "invariant": t.invariant, "key": t.entity_key, "severity": t.severity, "status": t.status,
            "message": t.message, "muted_by": t.muted_by}
