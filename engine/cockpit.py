"""What an operator must see, gathered from the store: the acting mode and where it comes from,
the kill switch, open tickets with the proposals awaiting approval, the last actions.

    info = mode_info(store, config.mode)        # ModeInfo: mode, source (config | override), who, when
    cockpit = gather(store, report, subject=..., config_mode=..., approve="opctl actions approve C {id}")

    status = store_status(store, config.mode)   # `opctl status`: leader, token, lease, what waits

`engine.view.live_view(cockpit)` renders it; this module only reads.

Mode precedence: a mode set with `opctl mode MODE` is persisted in the store and overrides the
config's `mode:` until `opctl mode --clear`; without an override the config's mode applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from engine.event_text import ACTION_KINDS
from engine.store import Event, Lease, Proposal, Store, Ticket

if TYPE_CHECKING:
    from engine.loop import TickReport

RECENT_ACTIONS = 12  # action events the live view keeps; it shows as many as fit


@dataclass(frozen=True)
class ModeInfo:
    """The mode in force and where it comes from."""

    mode: str
    source: Literal["config", "override"]
    config_mode: str
    actor: str | None = None  # who set the override
    at: float | None = None  # when

    @property
    def overridden(self) -> bool:
        """An override that differs from the config's mode (what `opctl run` warns about)."""
        return self.source == "override" and self.mode != self.config_mode

    def as_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "source": self.source, "config_mode": self.config_mode, "actor": self.actor, "at": self.at}


def mode_info(store: Store | None, config_mode: str) -> ModeInfo:
    setting = None if store is None else store.mode_setting()
    if setting is None:
        return ModeInfo(config_mode, "config", config_mode)
    return ModeInfo(str(setting["value"]), "override", config_mode, str(setting["actor"]), float(setting["at"]))


@dataclass(frozen=True)
class OpenTicket:
    ticket: Ticket
    awaiting: tuple[Proposal, ...] = ()  # its proposals awaiting approval, oldest first


@dataclass(frozen=True)
class Cockpit:
    """One frame of the live view.

    Attributes:
        approve: the command that approves a proposal, with `{id}` for its id (exactly what to type).
        leader: which replica holds the leader lease; None until replicas share a store
            (the "Two replicas" work fills it; the view shows it when set).
    """

    subject: str
    report: TickReport
    mode: ModeInfo
    kill: dict[str, Any] | None
    tickets: tuple[OpenTicket, ...]
    recent: tuple[Event, ...]  # the last action events, oldest first
    approve: str
    leader: str | None = None

    def approve_command(self, proposal_id: int) -> str:
        return self.approve.replace("{id}", str(proposal_id))


def gather(
    store: Store,
    report: TickReport,
    *,
    subject: str,
    config_mode: str,
    approve: str,
    leader: str | None = None,
    limit: int = 100,
) -> Cockpit:
    """The frame after `report`: everything read from the store in a few queries."""
    awaiting: dict[int, list[Proposal]] = {}
    for proposal in reversed(store.proposals(status="awaiting_approval", limit=limit)):
        awaiting.setdefault(proposal.ticket_id, []).append(proposal)
    tickets = tuple(OpenTicket(t, tuple(awaiting.get(t.id, ()))) for t in store.tickets(status="open", limit=limit))
    return Cockpit(
        subject=subject,
        report=report,
        mode=mode_info(store, config_mode),
        kill=store.killed(),
        tickets=tickets,
        recent=tuple(store.events(limit=RECENT_ACTIONS, kinds=ACTION_KINDS)),
        approve=approve,
        leader=leader,
    )


@dataclass(frozen=True)
class StoreStatus:
    """What `opctl status` prints: who leads, the mode, the kill switch, what is open and waits."""

    store: str
    lease: Lease
    mode: ModeInfo
    kill: dict[str, Any] | None
    open_tickets: dict[str, int]  # by status: open, verifying, escalated
    firing: int  # open tickets whose entity still fires (incidents)
    pending: tuple[Proposal, ...]  # awaiting approval, oldest first

    def as_json(self) -> dict[str, Any]:
        lease = {k: v for k, v in self.lease.as_json().items() if k not in ("replica", "leading")}  # leader, token, expires_*
        return {
            "store": self.store,
            **lease,
            "lease_holder": self.lease.holder,  # also when its lease lapsed
            "mode": self.mode.as_json(),
            "kill_switch": self.kill,
            "open_tickets": sum(self.open_tickets.values()),
            "open_by_status": self.open_tickets,
            "incidents": self.firing,
            "pending_approvals": [{"proposal": p.id, "ticket": p.ticket_id, "action": p.action, "expires_at": p.expires_at} for p in self.pending],
        }


def store_status(store: Store, config_mode: str, *, limit: int = 1000) -> StoreStatus:
    tickets = store.tickets(status="open", limit=limit)
    by_status: dict[str, int] = {"open": 0, "verifying": 0, "escalated": 0}
    for ticket in tickets:
        by_status[ticket.status] = by_status.get(ticket.status, 0) + 1
    firing = sum(1 for t in tickets if (s := store.entity_state(t.invariant, t.entity_key)) is not None and s == "firing")
    return StoreStatus(
        store=str(store.path),
        lease=store.lease(),
        mode=mode_info(store, config_mode),
        kill=store.killed(),
        open_tickets=by_status,
        firing=firing,
        pending=tuple(reversed(store.proposals(status="awaiting_approval", limit=limit))),
    )
