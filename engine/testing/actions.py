"""What the acting stage did so far, as `ActionRecord`s for `actions:` assertions.

One record per proposal (its current status), oldest first, read from the run's store; an
executed proposal carries the request the recorder received in its place (nothing was sent).
Store statuses are shown as a test author thinks of them: `succeeded` is `executed`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine.act import ActionRequest
from engine.errors import OpctlError
from engine.store import Store

STATUS_NAMES = {"succeeded": "executed"}


@dataclass(frozen=True)
class ActionRecord:
    """One proposal and what became of it.

    Attributes:
        status: proposed, refused, awaiting_approval, approved, rejected, expired, cancelled,
            executing, executed or failed.
        gate / reason: for `refused`, which gate and why; otherwise the last decision's note.
        request: for an executed (or failed) proposal, the request as the recorder got it
            (`ActionRequest.as_json()`: method, path, query, headers, body or command, line).
    """

    action: str
    status: str
    params: dict[str, Any]
    invariant: str
    key: str
    ticket: int
    gate: str | None = None
    reason: str | None = None
    request: dict[str, Any] | None = None


def action_records(store: Store, recorded: Sequence[ActionRequest]) -> list[ActionRecord]:
    """Every proposal of the run, oldest first; `recorded` are the recorder's requests in order."""
    executions = sorted(store.executions(limit=1_000_000), key=lambda e: e.id)
    if len(executions) != len(recorded) or any(e.action != r.action for e, r in zip(executions, recorded)):
        # each execution reaches the executor exactly once, in order; anything else is an engine defect
        raise OpctlError(
            f"the store lists {len(executions)} execution(s) but the recorder received {len(recorded)} request(s) "
            f"({', '.join(r.action for r in recorded) or 'none'}); they should be the same"
        )
    requests = {e.proposal_id: r.as_json() for e, r in zip(executions, recorded)}
    tickets = {t.id: t for t in store.tickets(limit=1_000_000)}
    records = []
    for proposal in sorted(store.proposals(limit=1_000_000), key=lambda p: p.id):
        ticket = tickets[proposal.ticket_id]
        records.append(
            ActionRecord(
                action=proposal.action,
                status=STATUS_NAMES.get(proposal.status, proposal.status),
                params=proposal.params,
                invariant=ticket.invariant,
                key=ticket.entity_key,
                ticket=ticket.id,
                gate=proposal.gate,
                reason=proposal.detail,
                request=requests.get(proposal.id),
            )
        )
    return records
