"""The Alertmanager receiver adapter: open incidents (and ones resolved within `max_age`) as
alerts through the API v2, `POST /api/v2/alerts`, sent again every `resend` (Alertmanager
resolves an alert it stops hearing about), resolved ones with `endsAt`; plus `Watchdog`.

Labels: alertname (the lead ticket's invariant), subject, key, severity, incident. Annotations:
summary (the ticket's message), diagnosis (the root cause, once known), approve (the exact
`opctl actions approve` command while a proposal waits)."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from typing import Any

import httpx

from engine.config.models import AlertmanagerReceiver
from engine.notify.outcome import Outcome, outcome_of
from engine.store import Incident, Store

ALERTS_PATH = "/api/v2/alerts"


def rfc3339(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts, tz=_dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def alerts(
    store: Store, *, subject: str, now: float, max_age: float, watchdog: bool, approve_command: Callable[[int], str],
) -> list[dict[str, Any]]:
    """The alerts to send now, one per incident opened for people."""
    out: list[dict[str, Any]] = []
    for incident in store.incidents(limit=1000):
        if incident.lead_ticket_id is None:
            continue  # never opened for people: muted, or still in group_wait
        if incident.resolved_at is not None and now - incident.resolved_at > max_age:
            continue
        alert = _alert(store, incident, subject=subject, approve_command=approve_command)
        if alert is not None:
            out.append(alert)
    if watchdog:
        out.append({"labels": {"alertname": "Watchdog", "subject": subject, "severity": "none"},
                    "annotations": {"summary": f"opctl watching {subject} is alive; page when this stops firing"},
                    "startsAt": rfc3339(now)})
    return out


def _alert(store: Store, incident: Incident, *, subject: str, approve_command: Callable[[int], str]) -> dict[str, Any] | None:
    lead = store.ticket(incident.lead_ticket_id) if incident.lead_ticket_id is not None else None
    if lead is None:
        return None
    annotations = {"summary": lead.message}
    diagnoses = [e for e in store.events(lead.id) if e.kind == "diagnosis"]
    if diagnoses:
        cause = diagnoses[-1].data.get("root_cause") or diagnoses[-1].data.get("summary")
        if cause:
            annotations["diagnosis"] = str(cause)
    waiting = [p for p in store.proposals(ticket_id=lead.id) if p.status == "awaiting_approval"]
    if waiting:
        annotations["approve"] = approve_command(waiting[0].id)
    alert: dict[str, Any] = {
        "labels": {"alertname": lead.invariant, "subject": subject, "key": lead.entity_key, "severity": lead.severity,
                   "incident": str(incident.id)},
        "annotations": annotations,
        "startsAt": rfc3339(incident.opened_at),
    }
    if incident.resolved_at is not None:
        alert["endsAt"] = rfc3339(incident.resolved_at)
    return alert


def send(client: httpx.Client, receiver: AlertmanagerReceiver, batch: list[dict[str, Any]]) -> Outcome:
    try:
        response = client.post(receiver.url.rstrip("/") + ALERTS_PATH, json=batch, timeout=receiver.timeout)
    except httpx.HTTPError as exc:
        return Outcome(False, True, f"{type(exc).__name__}: {exc}", None)
    return outcome_of(response)
