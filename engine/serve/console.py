"""What the console shows, read from the store `opctl run` writes, and the writes it makes
through the store's own methods (the same ones the CLI calls). It never acts: an approval, the
kill switch, a mode or a silence is a store write that the loop picks up on its next tick.

Every value handed out passes the config's Redactor first, as the CLI's output does.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.cockpit import mode_info
from engine.config.validate import LoadedConfig
from engine.errors import StoreError
from engine.event_text import describe
from engine.redact import Redactor
from engine.silences import Matcher, Silence, silencing, ticket_labels
from engine.store import Event, Store, Ticket
from engine.view import record_json, ticket_json


class NotFound(StoreError):
    """The record asked for does not exist."""


def leader(store: Store) -> str:
    """Which replica leads: the store's leader lease when it has one, else a single replica."""
    lease = getattr(store, "leader", None)
    found = lease() if callable(lease) else None
    return str(found) if found else "single replica"


@dataclass
class Console:
    loaded: LoadedConfig
    store: Store
    clock: Callable[[], float] = time.time
    redactor: Redactor = field(init=False)

    def __post_init__(self) -> None:
        self.redactor = Redactor(self.loaded.secrets)

    def clean(self, value: Any) -> Any:
        return self.redactor.value(value)

    # ------------------------------------------------------------------ reading

    def status(self) -> dict[str, Any]:
        kill = self.store.killed()
        now = self.clock()
        return self.clean({
            "subject": self.loaded.config.subject.name,
            "mode": mode_info(self.store, self.loaded.config.mode).as_json(),
            "kill": kill_json(kill),
            "leader": leader(self.store),
            "open_tickets": self.store.open_ticket_count(),
            "active_silences": len(self.store.silences(active_at=now)),
            "last_event_id": self.store.last_event_id(),
            "now": now,
        })  # fmt: skip

    def invariants(self) -> list[dict[str, Any]]:
        states = self.store.load_states()
        open_by_invariant: dict[str, int] = {}
        for ticket in self.store.tickets(status="open", limit=10_000):
            open_by_invariant[ticket.invariant] = open_by_invariant.get(ticket.invariant, 0) + 1
        out = []
        for invariant in self.loaded.config.invariants:
            entities = [
                {"key": key, "status": s.status, "active_since": s.active_since, "fired_at": s.fired_at, "last_error": s.last_error}
                for (name, key), s in sorted(states.items()) if name == invariant.name
            ]  # fmt: skip
            worst = "firing" if any(e["status"] == "firing" for e in entities) else "pending" if entities else "ok"
            out.append({"name": invariant.name, "severity": invariant.severity, "state": worst, "entities": entities,
                        "open_tickets": open_by_invariant.get(invariant.name, 0)})  # fmt: skip
        return self.clean(out)

    def tickets(self, status: str | None, limit: int) -> list[dict[str, Any]]:
        silences = self.store.silences(active_at=self.clock())
        return self.clean([self._ticket_json(t, silences) for t in self.store.tickets(status=status, limit=limit)])

    def ticket(self, ticket_id: int) -> dict[str, Any]:
        ticket = self.store.ticket(ticket_id)
        if ticket is None:
            raise NotFound(f"there is no ticket #{ticket_id}")
        events = self.store.events(ticket_id=ticket_id, limit=10_000)
        diagnoses = [e for e in events if e.kind == "diagnosis"]
        tokens = self.store.tokens_by_ticket(ticket_id)
        return self.clean({
            **self._ticket_json(ticket, self.store.silences(active_at=self.clock())),
            "snapshot": ticket.snapshot,
            "diagnosis": diagnoses[-1].data if diagnoses else None,
            "events": [event_json(e) for e in events],
            "proposals": [record_json(p) for p in self.store.proposals(ticket_id=ticket_id, limit=10_000)],
            "executions": [record_json(x) for x in self.store.executions(ticket_id=ticket_id, limit=10_000)],
            "tokens": {"input": tokens[0], "output": tokens[1]},
        })  # fmt: skip

    def incidents(self, open_only: bool, limit: int) -> list[dict[str, Any]]:
        return [self.incident(i.id) for i in self.store.incidents(open_only=open_only, limit=limit)]

    def incident(self, incident_id: int) -> dict[str, Any]:
        incident = self.store.incident(incident_id)
        if incident is None:
            raise NotFound(f"there is no incident #{incident_id}")
        silences = self.store.silences(active_at=self.clock())
        tickets = [self._ticket_json(t, silences) for t in self.store.incident_tickets(incident_id)]
        return self.clean({**dataclasses.asdict(incident), "tickets": tickets})

    def prompt(self, ticket_id: int) -> dict[str, str]:
        from engine.runtime import rendered_prompt

        if self.store.ticket(ticket_id) is None:
            raise NotFound(f"there is no ticket #{ticket_id}")
        system, user = rendered_prompt(str(self.loaded.file), ticket_id, str(self.store.path))
        return self.clean({"system": system, "user": user})

    def events(self, after: int, limit: int) -> list[dict[str, Any]]:
        found = [e for e in self.store.events(limit=limit) if e.id > after]
        return self.clean([event_json(e) for e in found])

    def proposals(self, status: str | None, ticket_id: int | None, limit: int) -> list[dict[str, Any]]:
        return self.clean([record_json(p) for p in self.store.proposals(status=status, ticket_id=ticket_id, limit=limit)])

    def silences(self) -> list[dict[str, Any]]:
        now = self.clock()
        return self.clean([s.as_json(now) for s in self.store.silences()])

    def _ticket_json(self, ticket: Ticket, silences: list[Silence]) -> dict[str, Any]:
        muting = silencing(silences, ticket_labels(ticket.invariant, ticket.entity_key, ticket.severity), self.clock())
        return {**ticket_json(ticket), "silenced_by": None if muting is None else muting.id}

    # ------------------------------------------------------------------ writing (store writes only)

    def approve(self, proposal_id: int, *, actor: str, comment: str) -> dict[str, Any]:
        self._require_proposal(proposal_id)
        proposal = self.store.approve(proposal_id, actor=actor, reason=comment)
        return {"proposal": self.clean(record_json(proposal)),
                "message": f"proposal #{proposal.id} ({proposal.action}) is approved; it runs on the engine's next tick if every gate still passes"}  # fmt: skip

    def reject(self, proposal_id: int, *, actor: str, comment: str) -> dict[str, Any]:
        self._require_proposal(proposal_id)
        proposal = self.store.reject(proposal_id, actor=actor, reason=comment)
        return {"proposal": self.clean(record_json(proposal)),
                "message": f"proposal #{proposal.id} ({proposal.action}) is rejected; ticket #{proposal.ticket_id} is escalated"}  # fmt: skip

    def kill(self, *, actor: str, reason: str) -> dict[str, Any]:
        cancelled = self.store.kill(actor=actor, reason=reason)
        return {"kill": self.clean(kill_json(self.store.killed())),
                "message": f"kill switch is ON; {len(cancelled)} pending proposal(s) cancelled"}  # fmt: skip

    def resume(self, *, actor: str, reason: str) -> dict[str, Any]:
        count = self.store.resume(actor=actor, reason=reason)
        return {"kill": kill_json(None), "message": f"kill switch is OFF; {count} ticket(s) will be attempted again"}

    def mode(self) -> dict[str, Any]:
        return self.clean(mode_info(self.store, self.loaded.config.mode).as_json())

    def set_mode(self, mode: str | None, *, actor: str) -> dict[str, Any]:
        if mode is None:
            self.store.clear_mode(actor=actor, then=self.loaded.config.mode)
        else:
            self.store.set_mode(mode, actor=actor)
        return self.mode()

    def add_silence(self, matchers: list[Matcher], *, starts_at: float | None, duration_s: float, actor: str, comment: str) -> dict[str, Any]:
        start = self.clock() if starts_at is None else starts_at
        silence = self.store.add_silence(matchers, starts_at=start, ends_at=start + duration_s, actor=actor, comment=comment)
        return self.clean(silence.as_json(self.clock()))

    def expire_silence(self, silence_id: int, *, actor: str) -> dict[str, Any]:
        if self.store.silence(silence_id) is None:
            raise NotFound(f"there is no silence #{silence_id}")
        return self.clean(self.store.expire_silence(silence_id, actor=actor).as_json(self.clock()))

    def _require_proposal(self, proposal_id: int) -> None:
        if self.store.proposal(proposal_id) is None:
            raise NotFound(f"there is no proposal #{proposal_id}")


def kill_json(kill: dict[str, Any] | None) -> dict[str, Any]:
    if kill is None:
        return {"on": False, "reason": None, "actor": None, "at": None}
    return {"on": True, "reason": None if kill["value"] == "on" else kill["value"], "actor": kill["actor"], "at": kill["at"]}


def event_json(event: Event) -> dict[str, Any]:
    described = describe(event)
    return {**record_json(event), "label": described[0] if described else None, "text": described[1] if described else None}
