"""The records the ticket store hands out (frozen dataclasses), and their rows.

`_*_COLUMNS` list the columns in the order the `_*_from_row` converters read them; `_dumps` is
the one JSON form written to the store's text columns.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from engine.store.statuses import RESOLVED


@dataclass(frozen=True)
class Ticket:
    """One firing episode of one (invariant, entity key).

    Attributes:
        status: `open`, `verifying`, `escalated` or `resolved` (see the module docstring).
        held: a human put it on hold: the engine does not auto-resolve it.
        first_seen / last_seen: when it opened / the last tick its entity was seen firing.
        occurrences: ticks in which its entity was seen firing while the ticket was open.
        snapshot: the observations that fired it, plus the entity's `item`.
        previous_ticket_id: the ticket of the previous episode of the same key (flapping).
        next_attempt_at: the engine may diagnose and propose again from then (None: now).
        parked: why the engine does not attempt it again until something changes (None: it may).
        verify_deadline / verify_proposal_id: while `verifying`, until when, and which proposal ran.
        incident_id: the incident it belongs to (None for tickets from before incidents).
        muted_by: why it is recorded only (not diagnosed, notified or acted on), e.g.
            "inhibited by node_redis_reachable (...)"; None when it is not muted.
    """

    id: int
    invariant: str
    entity_key: str
    labels: dict[str, str]
    severity: str
    status: str
    held: bool
    first_seen: float
    last_seen: float
    resolved_at: float | None
    occurrences: int
    message: str
    snapshot: dict[str, Any]
    previous_ticket_id: int | None
    next_attempt_at: float | None = None
    parked: str | None = None
    verify_deadline: float | None = None
    verify_proposal_id: int | None = None
    incident_id: int | None = None
    muted_by: str | None = None

    @property
    def is_open(self) -> bool:
        return self.status != RESOLVED


@dataclass(frozen=True)
class Event:
    """One line of the audit log; `ticket_id` is None for pending/cleared and observation events."""

    id: int
    ticket_id: int | None
    invariant: str | None
    entity_key: str | None
    kind: str
    actor: str
    at: float
    data: dict[str, Any]


@dataclass(frozen=True)
class TickChanges:
    """What one `apply_tick` changed.

    Attributes:
        opened: tickets opened by `firing` transitions.
        resolved: tickets resolved by `resolved` transitions.
        updated: ids of open tickets whose entity is still firing (last_seen, occurrences bumped).
        held: ids of held tickets whose entity resolved: they stay open until a human acts.
        events: how many events were appended.
    """

    opened: tuple[Ticket, ...] = ()
    resolved: tuple[Ticket, ...] = ()
    updated: tuple[int, ...] = ()
    held: tuple[int, ...] = ()
    events: int = 0


@dataclass(frozen=True)
class Incident:
    """Tickets that share a cause (the same `incidents.group_by` values), diagnosed once.

    Attributes:
        group_key: the group_by values its tickets share, as text (`subject=ratelimiter`).
        opened_at / resolved_at: when its first ticket opened / its last open ticket resolved.
        lead_ticket_id: the ticket diagnosed for the whole incident (None until chosen).
        ticket_ids: its member tickets, oldest first.
    """

    id: int
    group_key: str
    opened_at: float
    resolved_at: float | None
    lead_ticket_id: int | None
    ticket_ids: tuple[int, ...] = ()

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None


@dataclass(frozen=True)
class Proposal:
    """One recommended action for one ticket and what became of it.

    Attributes:
        source: who recommended it (`claude`, `runbook`, `replay`).
        status: one of PROPOSAL_STATUSES.
        gate / detail: for `refused`, which gate and why; otherwise the last decision's note.
        expires_at: for `awaiting_approval`, when it expires.
        decided_by: who approved, rejected or cancelled it.
    """

    id: int
    ticket_id: int
    action: str
    params: dict[str, Any]
    reason: str
    source: str
    status: str
    gate: str | None
    detail: str | None
    created_at: float
    updated_at: float
    expires_at: float | None
    decided_by: str | None


@dataclass(frozen=True)
class Execution:
    """One run of an action: written `executing` before the request, updated after it."""

    id: int
    proposal_id: int
    ticket_id: int
    action: str
    entity_key: str
    status: str
    request: dict[str, Any]
    started_at: float
    finished_at: float | None
    duration_s: float | None
    response: str | None
    error: str | None


@dataclass(frozen=True)
class ArmedRevert:
    """What undoes one execution of an action that declares a `revert`.

    Attributes:
        action / params: the action that ran and its params (its `revert` says what undoes it).
        status: `armed` (waits for its ticket to resolve, its `when`, the gates), `done` (the
            revert ran) or `given_up` (it cannot run: refused, failed, rejected...; see the events).
        proposal_id: the revert's current proposal (None until one is made, or again after a
            proposal that may be made again: observe mode, cancelled by the kill switch).
        waiting: the last reason recorded for waiting (each reason is written once).
    """

    id: int
    ticket_id: int
    execution_id: int
    action: str
    params: dict[str, Any]
    status: str
    proposal_id: int | None
    waiting: str | None
    created_at: float
    closed_at: float | None


@dataclass(frozen=True)
class TicketAct:
    """A change of a ticket's acting state, written with the event that explains it.

    Fields left at `...` (Ellipsis) are not changed; None clears a column.
    """

    status: str | None = None
    next_attempt_at: float | None | object = ...
    parked: str | None | object = ...
    verify_deadline: float | None | object = ...
    verify_proposal_id: int | None | object = ...


_TICKET_COLUMNS = (
    "id, invariant, entity_key, labels, severity, status, held, first_seen, last_seen, "
    "resolved_at, occurrences, message, snapshot, previous_ticket_id, next_attempt_at, parked, "
    "verify_deadline, verify_proposal_id, incident_id, muted_by"
)
_EVENT_COLUMNS = "id, ticket_id, invariant, entity_key, kind, actor, at, data"
_PROPOSAL_COLUMNS = (
    "id, ticket_id, action, params, reason, source, status, gate, detail, created_at, updated_at, expires_at, decided_by"
)
_REVERT_COLUMNS = "id, ticket_id, execution_id, action, params, status, proposal_id, waiting, created_at, closed_at"
_EXECUTION_COLUMNS = (
    "id, proposal_id, ticket_id, action, entity_key, status, request, started_at, finished_at, duration_s, response, error"
)


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _ticket_from_row(r: tuple[Any, ...]) -> Ticket:
    return Ticket(
        id=r[0],
        invariant=r[1],
        entity_key=r[2],
        labels=json.loads(r[3]),
        severity=r[4],
        status=r[5],
        held=bool(r[6]),
        first_seen=r[7],
        last_seen=r[8],
        resolved_at=r[9],
        occurrences=r[10],
        message=r[11],
        snapshot=json.loads(r[12]),
        previous_ticket_id=r[13],
        next_attempt_at=r[14],
        parked=r[15],
        verify_deadline=r[16],
        verify_proposal_id=r[17],
        incident_id=r[18],
        muted_by=r[19],
    )


def _event_from_row(r: tuple[Any, ...]) -> Event:
    return Event(r[0], r[1], r[2], r[3], r[4], r[5], r[6], json.loads(r[7]))


def _proposal_from_row(r: tuple[Any, ...]) -> Proposal:
    return Proposal(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12])


def _execution_from_row(r: tuple[Any, ...]) -> Execution:
    return Execution(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]), r[7], r[8], r[9], r[10], r[11])


def _revert_from_row(r: tuple[Any, ...]) -> ArmedRevert:
    return ArmedRevert(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5], r[6], r[7], r[8], r[9])
