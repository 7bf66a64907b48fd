"""The incident stage of a tick: group new tickets, mute, and say which tickets the acting stage
may attempt.

After the tick is stored, `record` puts each new ticket into its incident and resolves
incidents whose every ticket resolved. Then, for each due ticket, the acting stage asks `admit`:
a muted ticket is parked with the reason, recorded only for the rest of its episode (a symptom
that outlives its cause by a tick is still that cause's symptom, not a new problem to diagnose); a ticket of an incident younger than `group_wait` waits (later tickets of the same cause
still join it); the first admitted ticket of an incident (the most severe among its unmuted
open tickets) leads it and is diagnosed; the incident's other tickets are parked `grouped`,
diagnosed through the lead. So one cause is one diagnosis.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from engine.config.models import Config
from engine.evaluate import EntityState
from engine.incidents.grouping import group_key
from engine.incidents.muting import Inhibition, MuteContext, Muter, muted_by, muters_of
from engine.store import Store, TickChanges, Ticket

_SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}


class IncidentStage:
    def __init__(self, config: Config, store: Store, *, muters: Sequence[Muter] | None = None) -> None:
        self.config = config
        self.store = store
        self.muters: list[Muter] = list(muters) if muters is not None else muters_of(config, store)
        self.group_wait = config.incidents.group_wait if config.incidents.group_wait is not None else config.interval
        # how far back a cause's ticket can matter: the longest violation before firing, and a tick
        self.horizon = max((inv.hold for inv in config.invariants), default=0.0) + 2 * config.interval

    def record(self, changes: TickChanges, states: Mapping[tuple[str, str], EntityState], now: float) -> None:
        for ticket in changes.opened:
            self.store.join_incident(ticket.id, group_key(ticket, self.config.incidents.group_by, self.config.subject.name), at=now)
        if changes.resolved:
            self.store.close_incidents(at=now)

    def muted_by(self, ticket: Ticket, states: Mapping[tuple[str, str], EntityState], now: float) -> str | None:
        """Why the ticket is muted now (the first muting source that says so), or None."""
        inhibitors = [name for m in self.muters if isinstance(m, Inhibition) for name in m.invariants()]
        episodes = self.store.episodes(inhibitors, since=now - self.horizon) if inhibitors else []
        return muted_by(ticket, MuteContext.of(states, now, episodes), self.muters)

    def admit(self, ticket: Ticket, states: Mapping[tuple[str, str], EntityState], now: float) -> bool:
        """May the acting stage attempt this due ticket now?"""
        reason = self.muted_by(ticket, states, now)
        if reason is not None:
            self.store.mute_ticket(ticket, reason, at=now)
            return False
        if ticket.incident_id is None:
            return True  # a ticket from before incidents
        incident = self.store.incident(ticket.incident_id)
        if incident is None:
            return True
        if incident.lead_ticket_id is not None:
            if incident.lead_ticket_id == ticket.id:
                return True
            self.store.group_ticket(ticket, incident.lead_ticket_id, at=now)
            return False
        if now - incident.opened_at < self.group_wait:
            return False  # tickets of the same cause may still join before the first diagnosis
        lead = self._lead(incident.ticket_ids, states, now)
        if lead is None or lead != ticket.id:
            return False  # the lead is admitted on its own turn (this tick, or once it is due)
        self.store.lead_incident(incident.id, ticket.id, at=now)
        return True

    def _lead(self, ticket_ids: Sequence[int], states: Mapping[tuple[str, str], EntityState], now: float) -> int | None:
        """The most severe, then oldest, open and unmuted ticket of an incident."""
        candidates = []
        for ticket_id in ticket_ids:
            member = self.store.ticket(ticket_id)
            if member is None or member.status != "open" or member.held or member.parked is not None:
                continue
            if self.muted_by(member, states, now) is not None:
                continue
            candidates.append((_SEVERITY_RANK.get(member.severity, 3), member.id))
        return min(candidates)[1] if candidates else None
