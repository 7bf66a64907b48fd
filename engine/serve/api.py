"""The JSON API under /api/v1: reads for every viewer, writes for approvers only, each write
recorded with the token's name as the actor (`console:NAME`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from engine.serve import sse
from engine.serve.auth import ANONYMOUS, TOKENS_VARIABLE, Principal, authenticate
from engine.serve.console import Console
from engine.serve.models import (
    Comment,
    EventOut,
    IncidentOut,
    InvariantOut,
    KillOut,
    KillResultOut,
    ModeIn,
    ModeOut,
    Problem,
    PromptOut,
    ProposalDecisionOut,
    ProposalOut,
    SilenceIn,
    SilenceOut,
    StatusOut,
    TicketDetailOut,
    TicketOut,
)
from engine.silences import Matcher
from engine.store import PROPOSAL_STATUSES

_bearer = HTTPBearer(auto_error=False, description="A token of OPCTL_SERVE_TOKENS (name:token:role).")
MAX_ID = 2**62
Id = Annotated[int, Path(ge=1, le=MAX_ID)]
Limit = Annotated[int, Query(ge=1, le=10_000)]

_READ_ERRORS: dict[int | str, dict[str, Any]] = {401: {"model": Problem, "description": "No valid token."}}
_WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    **_READ_ERRORS,
    400: {"model": Problem, "description": "The body is not JSON."},
    403: {"model": Problem, "description": "The token is a viewer's (writes need an approver's)."},
    409: {"model": Problem, "description": "The store refused the change (the message says why)."},
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": Problem, "description": "No such record."}}


def console(request: Request) -> Console:
    return request.app.state.console  # type: ignore[no-any-return]


def viewer(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Principal:
    principals: tuple[Principal, ...] = request.app.state.principals
    if not principals:
        return Principal(ANONYMOUS, "viewer")  # loopback without tokens: read-only
    found = authenticate(principals, None if credentials is None else f"Bearer {credentials.credentials}")
    if found is None:
        raise HTTPException(401, "a valid token is needed: send Authorization: Bearer TOKEN", headers={"WWW-Authenticate": "Bearer"})
    return found


def approver(principal: Annotated[Principal, Depends(viewer)]) -> Principal:
    if not principal.may_write:
        if principal.name == ANONYMOUS:
            raise HTTPException(403, f"no tokens are configured, so the console is read-only: set {TOKENS_VARIABLE} with an approver")
        raise HTTPException(403, f"token {principal.name!r} is a viewer's; changes need an approver's")
    return principal


Reader = Annotated[Principal, Depends(viewer)]
Writer = Annotated[Principal, Depends(approver)]
Store = Annotated[Console, Depends(console)]

router = APIRouter(prefix="/api/v1", responses=_READ_ERRORS)


@router.get("/status", response_model=StatusOut, tags=["overview"])
def get_status(_: Reader, c: Store) -> dict[str, Any]:
    """Subject, mode, kill switch, leader, counts and the newest event id."""
    return c.status()


@router.get("/whoami", tags=["overview"])
def whoami(who: Reader) -> dict[str, str]:
    """The token's name and role (the console shows it beside the login)."""
    return {"name": who.name, "role": who.role}


@router.get("/invariants", response_model=list[InvariantOut], tags=["overview"])
def list_invariants(_: Reader, c: Store) -> list[dict[str, Any]]:
    """Every invariant of the config with its entities that are not ok."""
    return c.invariants()


@router.get("/incidents", response_model=list[IncidentOut], tags=["tickets"])
def list_incidents(_: Reader, c: Store, status: Literal["open", "all"] = "open", limit: Limit = 50) -> list[dict[str, Any]]:
    """Incidents (tickets grouped by `incidents.group_by`, diagnosed once through their lead), newest first."""
    return c.incidents(status == "open", limit)


@router.get("/incidents/{incident_id}", response_model=IncidentOut, responses=_NOT_FOUND, tags=["tickets"])
def get_incident(incident_id: Id, _: Reader, c: Store) -> dict[str, Any]:
    """One incident with its tickets."""
    return c.incident(incident_id)


@router.get("/tickets", response_model=list[TicketOut], tags=["tickets"])
def list_tickets(_: Reader, c: Store, status: Literal["open", "resolved", "all"] = "open", limit: Limit = 100) -> list[dict[str, Any]]:
    """Tickets, newest first (`open`: every status but resolved)."""
    return c.tickets(None if status == "all" else status, limit)


@router.get("/tickets/{ticket_id}", response_model=TicketDetailOut, responses=_NOT_FOUND, tags=["tickets"])
def get_ticket(ticket_id: Id, _: Reader, c: Store) -> dict[str, Any]:
    """One ticket with its whole timeline: events, diagnosis with evidence, proposals with the
    gate's decisions, executions and verification."""
    return c.ticket(ticket_id)


@router.get("/tickets/{ticket_id}/prompt", response_model=PromptOut, responses={**_NOT_FOUND, 409: {"model": Problem}}, tags=["tickets"])
def get_prompt(ticket_id: Id, _: Reader, c: Store) -> dict[str, str]:
    """The diagnosis prompt (system, user) rendered from the ticket's stored snapshot."""
    return c.prompt(ticket_id)


@router.get("/events", response_model=list[EventOut], tags=["tickets"])
def list_events(_: Reader, c: Store, after: Annotated[int, Query(ge=0, le=MAX_ID)] = 0, limit: Limit = 200) -> list[dict[str, Any]]:
    """The last `limit` audit events, oldest first, newer than `after`."""
    return c.events(after, limit)


@router.get("/proposals", response_model=list[ProposalOut], tags=["actions"])
def list_proposals(
    _: Reader, c: Store, status: Literal[PROPOSAL_STATUSES] | None = None,  # type: ignore[valid-type]
    ticket: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None, limit: Limit = 100,
) -> list[dict[str, Any]]:  # fmt: skip
    """Proposals, newest first."""
    return c.proposals(status, ticket, limit)


@router.post("/proposals/{proposal_id}/approve", response_model=ProposalDecisionOut, responses={**_WRITE_ERRORS, **_NOT_FOUND}, tags=["actions"])
def approve(proposal_id: Id, body: Comment, who: Writer, c: Store) -> dict[str, Any]:
    """Approve a proposal awaiting approval: the engine runs it on its next tick, after the gates."""
    return c.approve(proposal_id, actor=who.actor, comment=body.comment)


@router.post("/proposals/{proposal_id}/reject", response_model=ProposalDecisionOut, responses={**_WRITE_ERRORS, **_NOT_FOUND}, tags=["actions"])
def reject(proposal_id: Id, body: Comment, who: Writer, c: Store) -> dict[str, Any]:
    """Reject a proposal: it never runs, and its ticket is escalated."""
    return c.reject(proposal_id, actor=who.actor, comment=body.comment)


@router.get("/kill", response_model=KillOut, tags=["switches"])
def get_kill(_: Reader, c: Store) -> dict[str, Any]:
    return c.status()["kill"]  # type: ignore[no-any-return]


@router.post("/kill", response_model=KillResultOut, responses=_WRITE_ERRORS, tags=["switches"])
def kill(body: Comment, who: Writer, c: Store) -> dict[str, Any]:
    """Turn the kill switch on: pending proposals are cancelled; the loop stops acting within a tick."""
    return c.kill(actor=who.actor, reason=body.comment)


@router.post("/resume", response_model=KillResultOut, responses=_WRITE_ERRORS, tags=["switches"])
def resume(body: Comment, who: Writer, c: Store) -> dict[str, Any]:
    """Turn the kill switch off."""
    return c.resume(actor=who.actor, reason=body.comment)


@router.get("/mode", response_model=ModeOut, tags=["switches"])
def get_mode(_: Reader, c: Store) -> dict[str, Any]:
    return c.mode()


@router.put("/mode", response_model=ModeOut, responses=_WRITE_ERRORS, tags=["switches"])
def put_mode(body: ModeIn, who: Writer, c: Store) -> dict[str, Any]:
    """Set the acting mode for every engine on this store (null: back to the config's)."""
    return c.set_mode(body.mode, actor=who.actor)


@router.get("/silences", response_model=list[SilenceOut], tags=["silences"])
def list_silences(_: Reader, c: Store) -> list[dict[str, Any]]:
    """Every silence, newest first, with its state now."""
    return c.silences()


@router.post("/silences", response_model=SilenceOut, status_code=201, responses=_WRITE_ERRORS, tags=["silences"])
def add_silence(body: SilenceIn, who: Writer, c: Store) -> dict[str, Any]:
    """A silence: tickets its matchers match are recorded but neither notified nor acted on."""
    matchers = [Matcher(m.name, m.value, m.regex) for m in body.matchers]
    return c.add_silence(matchers, starts_at=body.starts_at, duration_s=body.duration_s, actor=who.actor, comment=body.comment)


@router.delete("/silences/{silence_id}", response_model=SilenceOut, responses={**_WRITE_ERRORS, **_NOT_FOUND}, tags=["silences"])
def expire_silence(silence_id: Id, who: Writer, c: Store) -> dict[str, Any]:
    """Expire a silence now (it stays listed, as expired)."""
    return c.expire_silence(silence_id, actor=who.actor)


@router.get("/stream", tags=["overview"], response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}, "description": "`change` events with the newest event id."}})
async def stream(request: Request, _: Reader, c: Store) -> StreamingResponse:
    """Server-Sent Events: `event: change` whenever the audit log grows."""
    since = request.headers.get("last-event-id")
    start = int(since) if since is not None and since.isdigit() else None
    return StreamingResponse(
        sse.changes(c.store.last_event_id, request.is_disconnected, since=start),
        media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )  # fmt: skip
