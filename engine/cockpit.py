"""What an operator must see, gathered from the store: the acting mode and where it comes from,
the kill switch, open tickets with the proposals awaiting approval, the last actions.

    info = mode_info(store, config.mode)        # ModeInfo: mode, source (config | override), who, when
    cockpit = gather(store, report, subject=..., config_mode=..., approve="opctl actions approve C {id}")

`engine.view.live_view(cockpit)` renders it; this module only reads.

Mode precedence: a mode set with `opctl mode MODE` is persisted in the store and overrides the
config's `mode:` until `opctl mode --clear`; without an override the config's mode applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from engine.event_text import ACTION_KINDS
from engine.store import Event, Proposal, Store, Ticket

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
