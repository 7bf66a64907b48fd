"""The incident stage of a tick: group new tickets, mute, and say which tickets the acting stage
may attempt.

After the tick is stored, `record` puts each new ticket into its incident (a symptom muted by
an inhibition into its cause's, so one cause is listed as one incident) and resolves
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
from engine.incidents.muting import Cause, Inhibition, MuteContext, Muter, muted_by, muters_of
from engine.store import Incident, Store, TickChanges, Ticket

_SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}


class IncidentStage:
    def __init__(self, config: Config, store: Store, *, muters: Sequence[Muter] | None = None) -> None:
        self.config = config
        self.store = store
        self.muters: list[Muter] = list(muters) if muters is not None else muters_of(config, store)
        self.group_wait = config.incidents.group_wait if config.incidents.group_wait is not None else config.interval
        # how far back a cause's ticket can matter: the longest violation before firing, and a tick
        self.horizon = max((inv.hold for inv in config.invariants), default=0.0) + 2 * config.interval
        self._context_of: tuple[float, Mapping[tuple[str, str], EntityState], MuteContext] | None = None

    def record(self, changes: TickChanges, states: Mapping[tuple[str, str], EntityState], now: float) -> None:
        """New tickets join incidents: an inhibited one (a symptom) the open incident of its
        cause's ticket, so one cause is listed as one incident; any other its group's."""
        if changes.opened:
            causes = self._causes(changes.opened, states, now)
            # (invariant, key) -> incident of the open tickets: this tick's as they join, older
            # ones read once, when a cause is not among this tick's
            joined: dict[tuple[str, str], Incident] = {}
            older: dict[tuple[str, str], int] | None = None
            for ticket in sorted(changes.opened, key=lambda t: t.id in causes):  # causes first
                cause = causes.get(ticket.id)
                group = None
                if cause is not None:
                    if older is None and not any((cause.invariant, k) in joined for k in cause.keys):
                        older = {(t.invariant, t.entity_key): t.incident_id for t in self.store.tickets(status="open", limit=10_000)
                                 if t.incident_id is not None}
                    group = self._group_of_cause(cause, joined, older or {})
                if group is None:
                    group = group_key(ticket, self.config.incidents.group_by, self.config.subject.name)
                joined[(ticket.invariant, ticket.entity_key)] = self.store.join_incident(ticket.id, group, at=now)
        if changes.resolved:
            self.store.close_incidents(at=now)

    def _causes(self, tickets: Sequence[Ticket], states: Mapping[tuple[str, str], EntityState], now: float) -> dict[int, Cause]:
        """The tickets an inhibition mutes now, with what inhibits each."""
        inhibition = next((m for m in self.muters if isinstance(m, Inhibition)), None)
        if inhibition is None:
            return {}
        context = self._context(states, now)
        found = {t.id: inhibition.cause(t, context) for t in tickets}
        return {ticket_id: cause for ticket_id, cause in found.items() if cause is not None}

    def _group_of_cause(self, cause: Cause, joined: Mapping[tuple[str, str], Incident],
                        older: Mapping[tuple[str, str], int]) -> str | None:
        """The group of the open incident a cause's ticket is in, or None (it has none open)."""
        for key in cause.keys:
            if (cause.invariant, key) in joined:
                return joined[(cause.invariant, key)].group_key
        for key in cause.keys:
            incident_id = older.get((cause.invariant, key))
            incident = self.store.incident(incident_id) if incident_id is not None else None
            if incident is not None and incident.resolved_at is None:
                return incident.group_key
        return None

    def _context(self, states: Mapping[tuple[str, str], EntityState], now: float) -> MuteContext:
        """What muting looks at this tick: read once per tick (every admitted ticket and every
        lead candidate asks), as the tick's states and the inhibitors' tickets stay put in it."""
        if self._context_of is not None and self._context_of[0] == now and self._context_of[1] is states:
            return self._context_of[2]
        inhibitors = [name for m in self.muters if isinstance(m, Inhibition) for name in m.invariants()]
        episodes = self.store.episodes(inhibitors, since=now - self.horizon) if inhibitors else []
        context = MuteContext.of(states, now, episodes)
        self._context_of = (now, states, context)
        return context

    def muted_by(self, ticket: Ticket, states: Mapping[tuple[str, str], EntityState], now: float) -> str | None:
        """Why the ticket is muted now (the first muting source that says so), or None."""
        return muted_by(ticket, self._context(states, now), self.muters)

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
