"""The Store's acting: ticket acting state, proposals, executions, switches (kill, mode), cached
diagnoses and token spend. Each change writes its audit event in the same transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.durations import utc_text
from engine.errors import StaleStatus, StoreError
from engine.store.base import Conn, StoreBase
from engine.store.dialect import Dialect
from engine.store.limits import Refusal, StartRule, store_refusal
from engine.store.records import (
    _EXECUTION_COLUMNS,
    _PROPOSAL_COLUMNS,
    _TICKET_COLUMNS,
    Execution,
    Proposal,
    Ticket,
    TicketAct,
    _dumps,
    _execution_from_row,
    _proposal_from_row,
    _ticket_from_row,
)
from engine.store.statuses import (
    _LIVE,
    ESCALATED,
    KILL_SWITCH,
    LIVE_PROPOSALS,
    MODE_SWITCH,
    OPEN,
    PARKED_KILLED,
    PARKED_OBSERVE,
    PROPOSAL_STATUSES,
    RESOLVED,
    TICKET_STATUSES,
    VERIFYING,
)

_SWITCH_UPSERT = Dialect.upsert("switches", ("name", "value", "actor", "at"), ("name",))
_DIAGNOSIS_UPSERT = Dialect.upsert("diagnoses", ("fingerprint", "at", "diagnosis"), ("fingerprint",))


class ActingStore(StoreBase):
    """Ticket acting state, proposals, executions, switches, diagnoses and token spend of a Store."""

    # ------------------------------------------------------------------ acting: ticket state

    def due_tickets(self, now: float) -> list[Ticket]:
        """Open tickets the engine may diagnose and propose for now: status `open`, not held, not
        parked, past `next_attempt_at`, and without a live proposal. Oldest first."""
        with self._reading() as conn:
            rows = conn.execute(
                f"SELECT {_TICKET_COLUMNS} FROM tickets t WHERE status = '{OPEN}' AND held = 0 AND parked IS NULL "
                "AND (next_attempt_at IS NULL OR next_attempt_at <= ?) "
                f"AND NOT EXISTS (SELECT 1 FROM proposals p WHERE p.ticket_id = t.id AND p.status IN {_LIVE}) ORDER BY id",
                (now,),
            ).fetchall()
        return [_ticket_from_row(r) for r in rows]

    def similar_tickets(self, invariant: str, *, exclude: int, limit: int = 5) -> list[Ticket]:
        """Earlier tickets of the same invariant, newest first."""
        with self._reading() as conn:
            rows = conn.execute(
                f"SELECT {_TICKET_COLUMNS} FROM tickets WHERE invariant = ? AND id != ? ORDER BY id DESC LIMIT ?",
                (invariant, exclude, limit),
            ).fetchall()
        return [_ticket_from_row(r) for r in rows]

    def update_ticket_act(
        self, ticket_id: int, change: TicketAct, *, kind: str, data: Mapping[str, Any], actor: str, at: float
    ) -> Ticket:
        """Change a ticket's acting state and append the event saying why, in one transaction.
        A resolved ticket is left as it is (the event is still written)."""
        with self._transaction() as conn:
            ticket = self._require(conn, ticket_id, "update")
            self._set_ticket_act(conn, ticket, change)
            self._insert_event(conn, kind, ticket_id, ticket.invariant, ticket.entity_key, actor, at, data)
            return self._ticket(conn, ticket_id)  # type: ignore[return-value]

    @staticmethod
    def _set_ticket_act(conn: Conn, ticket: Ticket, change: TicketAct) -> None:
        if not ticket.is_open:
            return
        sets: list[str] = []
        args: list[Any] = []
        if change.status is not None:
            if change.status not in TICKET_STATUSES or change.status == RESOLVED:
                raise StoreError(f"the engine cannot set ticket {ticket.id} to status {change.status!r}")
            sets.append("status = ?")
            args.append(change.status)
        for column in ("next_attempt_at", "parked", "verify_deadline", "verify_proposal_id"):
            value = getattr(change, column)
            if value is not ...:
                sets.append(f"{column} = ?")
                args.append(value)
        if sets:
            conn.execute(f"UPDATE tickets SET {', '.join(sets)} WHERE id = ?", (*args, ticket.id))

    def verifying_tickets(self) -> list[Ticket]:
        with self._reading() as conn:
            rows = conn.execute(f"SELECT {_TICKET_COLUMNS} FROM tickets WHERE status = '{VERIFYING}' ORDER BY id").fetchall()
        return [_ticket_from_row(r) for r in rows]

    # ------------------------------------------------------------------ acting: proposals

    def add_proposal(
        self,
        ticket_id: int,
        *,
        action: str,
        params: Mapping[str, Any],
        reason: str,
        source: str,
        status: str,
        at: float,
        gate: str | None = None,
        detail: str | None = None,
        expires_at: float | None = None,
        actor: str = "engine",
    ) -> Proposal:
        """Record a proposal with the gate's decision, and its event (kind = the status)."""
        with self._transaction() as conn:
            return self._insert_proposal(
                conn, ticket_id, action=action, params=params, reason=reason, source=source, status=status, at=at,
                gate=gate, detail=detail, expires_at=expires_at, actor=actor,
            )  # fmt: skip

    def _insert_proposal(
        self,
        conn: Conn,
        ticket_id: int,
        *,
        action: str,
        params: Mapping[str, Any],
        reason: str,
        source: str,
        status: str,
        at: float,
        gate: str | None,
        detail: str | None,
        expires_at: float | None,
        actor: str,
    ) -> Proposal:
        if status not in PROPOSAL_STATUSES:
            raise StoreError(f"unknown proposal status {status!r}")
        ticket = self._require(conn, ticket_id, "propose an action for")
        if status in LIVE_PROPOSALS:
            # the in-flight gate once more, atomically: two processes that both passed it for
            # one ticket do not both leave a live proposal
            other = conn.execute(
                f"SELECT id, status FROM proposals WHERE ticket_id = ? AND status IN {_LIVE} ORDER BY id LIMIT 1", (ticket_id,)
            ).fetchone()
            if other is not None:
                status, gate = "refused", "in_flight"
                detail = f"ticket #{ticket_id} already has proposal #{other[0]} {other[1].replace('_', ' ')}"
                expires_at = None
        proposal_id = int(conn.execute(
            "INSERT INTO proposals (ticket_id, action, params, reason, source, status, gate, detail, created_at, "
            "updated_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (ticket_id, action, _dumps(dict(params)), reason, source, status, gate, detail, at, at, expires_at),
        ).fetchone()[0])
        data: dict[str, Any] = {"proposal": proposal_id, "action": action, "params": dict(params), "source": source}
        if reason:
            data["reason"] = reason
        if gate is not None:
            data["gate"] = gate
        if detail is not None:
            data["detail"] = detail
        if expires_at is not None:
            data["expires_at"] = expires_at
        self._insert_event(conn, status, ticket_id, ticket.invariant, ticket.entity_key, actor, at, data)
        return self._proposal(conn, proposal_id)  # type: ignore[return-value]

    def set_proposal_status(
        self,
        proposal_id: int,
        status: str,
        *,
        actor: str,
        at: float,
        gate: str | None = None,
        detail: str | None = None,
        expect: tuple[str, ...] | None = None,
        ticket: TicketAct | None = None,
    ) -> Proposal:
        """Move a proposal to `status` (only from `expect` when given), with its event; optionally
        change its ticket's acting state in the same transaction."""
        with self._transaction() as conn:
            return self._move_proposal(conn, proposal_id, status, actor=actor, at=at, gate=gate, detail=detail, expect=expect, ticket=ticket)

    def _move_proposal(
        self,
        conn: Conn,
        proposal_id: int,
        status: str,
        *,
        actor: str,
        at: float,
        gate: str | None = None,
        detail: str | None = None,
        expect: tuple[str, ...] | None = None,
        ticket: TicketAct | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> Proposal:
        if status not in PROPOSAL_STATUSES:
            raise StoreError(f"unknown proposal status {status!r}")
        proposal = self._proposal(conn, proposal_id)
        if proposal is None:
            raise StoreError(f"there is no proposal #{proposal_id} in {self.location}")
        if expect is not None and proposal.status not in expect:
            wanted = " or ".join(expect)
            raise StaleStatus(f"proposal #{proposal_id} is {proposal.status}, not {wanted}", status=proposal.status)
        decided = actor if status in ("approved", "rejected", "cancelled", "expired") else proposal.decided_by
        moved = conn.execute(  # a compare-and-set: only from the status just read
            "UPDATE proposals SET status = ?, gate = ?, detail = ?, updated_at = ?, decided_by = ? WHERE id = ? AND status = ?",
            (status, gate if gate is not None else proposal.gate, detail if detail is not None else proposal.detail, at, decided,
             proposal_id, proposal.status),
        ).rowcount
        if moved != 1:
            raise StaleStatus(f"proposal #{proposal_id} changed while it was being moved to {status}", status="changed")
        row = self._ticket(conn, proposal.ticket_id)
        assert row is not None  # a foreign key
        if ticket is not None:
            self._set_ticket_act(conn, row, ticket)
        event: dict[str, Any] = {"proposal": proposal_id, "action": proposal.action, **(data or {})}
        if gate is not None:
            event["gate"] = gate
        if detail is not None:
            event["detail"] = detail
        self._insert_event(conn, status, proposal.ticket_id, row.invariant, row.entity_key, actor, at, event)
        return self._proposal(conn, proposal_id)  # type: ignore[return-value]

    def approve(self, proposal_id: int, *, actor: str, reason: str = "") -> Proposal:
        """A human approves a proposal waiting for approval; the engine runs it on its next tick,
        after running the gates again. Refused while the kill switch is on or once expired."""
        now = self._clock()
        with self._transaction() as conn:
            proposal = self._proposal(conn, proposal_id)
            if proposal is None:
                raise StoreError(f"there is no proposal #{proposal_id} in {self.location}")
            if proposal.status != "awaiting_approval":
                raise StoreError(f"cannot approve proposal #{proposal_id}: it is {proposal.status}, not awaiting approval")
            if self._switch(conn, KILL_SWITCH) is not None:
                raise StoreError(f"cannot approve proposal #{proposal_id}: the kill switch is on (run `opctl resume` first)")
            if proposal.expires_at is not None and proposal.expires_at <= now:
                raise StoreError(f"cannot approve proposal #{proposal_id}: it expired at {utc_text(proposal.expires_at)} UTC")
            return self._move_proposal(conn, proposal_id, "approved", actor=actor, at=now, data={"reason": reason} if reason else None)

    def reject(self, proposal_id: int, *, actor: str, reason: str = "") -> Proposal:
        """A human rejects a proposal: it never runs, and its ticket is escalated to humans."""
        now = self._clock()
        with self._transaction() as conn:
            proposal = self._proposal(conn, proposal_id)
            if proposal is None:
                raise StoreError(f"there is no proposal #{proposal_id} in {self.location}")
            if proposal.status not in ("awaiting_approval", "approved"):
                raise StoreError(f"cannot reject proposal #{proposal_id}: it is {proposal.status}")
            return self._move_proposal(
                conn, proposal_id, "rejected", actor=actor, at=now,
                data={"reason": reason} if reason else None, ticket=TicketAct(status=ESCALATED),
            )

    def _ticket_resolved(self, conn: Conn, ticket_id: int, *, actor: str, at: float) -> None:
        """A proposal waiting for approval, or approved but not started, has nothing left to fix."""
        ids = [r[0] for r in conn.execute(
            "SELECT id FROM proposals WHERE ticket_id = ? AND status IN ('awaiting_approval', 'approved') ORDER BY id",
            (ticket_id,),
        )]
        for pid in ids:
            self._move_proposal(conn, pid, "cancelled", actor=actor, at=at, detail="its ticket resolved before it ran")

    def _resolution_work(self, conn: Conn) -> set[int]:
        return {int(r[0]) for r in conn.execute(
            "SELECT DISTINCT ticket_id FROM proposals WHERE status IN ('awaiting_approval', 'approved')"
        )}

    def expire_proposals(self, now: float, *, actor: str = "engine") -> list[Proposal]:
        """Proposals whose approval window passed become `expired`; their tickets are escalated."""
        with self._transaction() as conn:
            ids = [r[0] for r in conn.execute(
                "SELECT id FROM proposals WHERE status = 'awaiting_approval' AND expires_at IS NOT NULL AND expires_at <= ? ORDER BY id",
                (now,),
            )]
            return [
                self._move_proposal(conn, pid, "expired", actor=actor, at=now, detail="nobody approved it in time",
                                    ticket=TicketAct(status=ESCALATED))
                for pid in ids
            ]

    def proposal(self, proposal_id: int) -> Proposal | None:
        with self._reading() as conn:
            return self._proposal(conn, proposal_id)

    def proposals(self, *, status: str | None = None, ticket_id: int | None = None, limit: int = 100) -> list[Proposal]:
        """Newest first; `status="pending"` means awaiting approval or approved."""
        clauses: list[str] = []
        args: list[Any] = []
        if status == "pending":
            clauses.append("status IN ('awaiting_approval', 'approved')")
        elif status is not None:
            clauses.append("status = ?")
            args.append(status)
        if ticket_id is not None:
            clauses.append("ticket_id = ?")
            args.append(ticket_id)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._reading() as conn:
            rows = conn.execute(f"SELECT {_PROPOSAL_COLUMNS} FROM proposals{where} ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        return [_proposal_from_row(r) for r in rows]

    def live_proposals(self, ticket_id: int) -> list[Proposal]:
        """Proposals of the ticket that may still run: awaiting approval, approved or executing."""
        with self._reading() as conn:
            rows = conn.execute(
                f"SELECT {_PROPOSAL_COLUMNS} FROM proposals WHERE ticket_id = ? AND status IN {_LIVE} ORDER BY id", (ticket_id,)
            ).fetchall()
        return [_proposal_from_row(r) for r in rows]

    # ------------------------------------------------------------------ acting: executions

    def begin_execution(
        self, proposal_id: int, *, request: Mapping[str, Any], at: float, rule: StartRule, actor: str = "engine"
    ) -> Execution | Refusal:
        """The gate's last word and the start, in ONE transaction, after all of the gate's I/O:
        the kill switch, the proposal still `approved` (a compare-and-set to `executing`), its
        ticket's status, cooldown, budgets, in-flight and attempts are checked again, and the
        execution is recorded BEFORE the request runs (a crash after this never replays it:
        `interrupted_executions` marks it `unknown`). A refusal is returned, not raised: a
        proposal still approved becomes `refused`; one another process moved first (rejected,
        cancelled by the kill switch, started by another loop) keeps its status, and a
        `lost_race` event on its ticket says why it did not start."""
        with self._transaction() as conn:
            proposal = self._proposal(conn, proposal_id)
            if proposal is None:
                raise StoreError(f"there is no proposal #{proposal_id} in {self.location}")
            ticket = self._ticket(conn, proposal.ticket_id)
            assert ticket is not None
            if proposal.status != "approved":
                refusal = Refusal("status", f"proposal #{proposal_id} is {proposal.status.replace('_', ' ')}, no longer approved")
                self._insert_event(conn, "lost_race", ticket.id, ticket.invariant, ticket.entity_key, actor, at,
                                   {"proposal": proposal_id, "action": proposal.action, "status": proposal.status, "reason": refusal.reason})
                return refusal
            refusal = store_refusal(conn, rule, ticket, proposal_id=proposal_id, now=at)
            if refusal is not None:
                self._move_proposal(conn, proposal_id, "refused", actor=actor, at=at, gate=refusal.gate, detail=refusal.reason,
                                    expect=("approved",), data={"at_start": True})
                return refusal
            execution_id = int(conn.execute(
                "INSERT INTO executions (proposal_id, ticket_id, action, entity_key, status, request, started_at) "
                "VALUES (?, ?, ?, ?, 'executing', ?, ?) RETURNING id",
                (proposal_id, ticket.id, proposal.action, ticket.entity_key, _dumps(dict(request)), at),
            ).fetchone()[0])
            self._move_proposal(conn, proposal_id, "executing", actor=actor, at=at, expect=("approved",),
                                data={"execution": execution_id, "request": dict(request)})
            return self._execution(conn, execution_id)  # type: ignore[return-value]

    def refuse_proposal(
        self, proposal_id: int, refusal: Refusal, *, at: float, ticket: TicketAct | None = None, actor: str = "engine"
    ) -> Proposal:
        """An approved proposal the gate refused becomes `refused` (its ticket changes with it),
        by a compare-and-set: when another process moved it first (a reject, the kill switch,
        another loop that started it), its status stays and a `lost_race` event says so."""
        with self._transaction() as conn:
            try:
                return self._move_proposal(conn, proposal_id, "refused", actor=actor, at=at, gate=refusal.gate,
                                           detail=refusal.reason, expect=("approved",), ticket=ticket)
            except StaleStatus:
                proposal = self._proposal(conn, proposal_id)
                assert proposal is not None
                row = self._ticket(conn, proposal.ticket_id)
                assert row is not None
                self._insert_event(conn, "lost_race", row.id, row.invariant, row.entity_key, actor, at, {
                    "proposal": proposal_id, "action": proposal.action, "status": proposal.status,
                    "reason": f"refused by gate {refusal.gate} ({refusal.reason}), but it was {proposal.status} by then",
                })  # fmt: skip
                return proposal

    def finish_execution(
        self,
        execution_id: int,
        *,
        ok: bool,
        duration_s: float,
        response: str,
        error: str | None,
        at: float,
        ticket: TicketAct | None = None,
        ticket_event: tuple[str, Mapping[str, Any]] | None = None,
        details: Mapping[str, Any] | None = None,
        actor: str = "engine",
        arm_revert: bool = False,
    ) -> Execution:
        """Record how an execution ended; its proposal becomes succeeded/failed (event with the
        status, duration and response excerpt) and the ticket's acting state changes with it.
        `arm_revert`: the action declares a revert; a success arms it in the same transaction.
        Not fenced: the request was sent, so its outcome is recorded even by a replica that lost
        the lease meanwhile (unless the new leader already marked it `unknown`: `late_outcome`)."""
        with self._transaction(fenced=False) as conn:
            execution = self._execution(conn, execution_id)
            if execution is None:
                raise StoreError(f"there is no execution #{execution_id} in {self.location}")
            status = "succeeded" if ok else "failed"
            moved = 0
            if execution.status == "executing":
                moved = conn.execute(  # a compare-and-set: never over another writer's outcome
                    "UPDATE executions SET status = ?, finished_at = ?, duration_s = ?, response = ?, error = ? "
                    "WHERE id = ? AND status = 'executing'",
                    (status, at, duration_s, response, error, execution_id),
                ).rowcount
            if moved != 1:  # e.g. marked `unknown` by a replica that took over meanwhile
                row = self._ticket(conn, execution.ticket_id)
                assert row is not None
                self._insert_event(conn, "late_outcome", row.id, row.invariant, row.entity_key, actor, at, {
                    "execution": execution_id, "proposal": execution.proposal_id, "recorded": execution.status,
                    "outcome": status, "response": response, **({"error": error} if error is not None else {}),
                })  # fmt: skip
                return execution
            data: dict[str, Any] = {
                "execution": execution_id,
                "request": execution.request.get("line"),
                "duration_s": round(duration_s, 4),
                "response": response,
                **(details or {}),
            }
            if error is not None:
                data["error"] = error
            proposal = self._move_proposal(conn, execution.proposal_id, status, actor=actor, at=at, ticket=ticket, data=data)
            if ticket_event is not None:
                row = self._ticket(conn, proposal.ticket_id)
                assert row is not None
                kind, event = ticket_event
                self._insert_event(conn, kind, row.id, row.invariant, row.entity_key, actor, at, event)
            if ok and arm_revert:
                self._arm_revert(conn, execution, proposal, at, actor)
            return self._execution(conn, execution_id)  # type: ignore[return-value]

    def _arm_revert(self, conn: Conn, execution: Execution, proposal: Proposal, at: float, actor: str) -> None:
        """What undoes this execution waits for its ticket to resolve (engine.store.reverting)."""
        revert_id = int(conn.execute(
            "INSERT INTO reverts (ticket_id, execution_id, action, params, status, created_at) VALUES (?, ?, ?, ?, 'armed', ?) RETURNING id",
            (execution.ticket_id, execution.id, proposal.action, _dumps(proposal.params), at),
        ).fetchone()[0])
        ticket = self._ticket(conn, execution.ticket_id)
        assert ticket is not None
        data = {"revert": revert_id, "execution": execution.id, "action": proposal.action, "params": proposal.params}
        self._insert_event(conn, "revert_armed", ticket.id, ticket.invariant, ticket.entity_key, actor, at, data)

    def interrupted_executions(self, now: float, *, actor: str = "engine") -> list[Execution]:
        """On start: executions a crash left `executing` become `unknown`; their proposals fail and
        are never re-run, and their tickets are escalated (nobody knows what happened)."""
        with self._transaction() as conn:
            ids = [r[0] for r in conn.execute("SELECT id FROM executions WHERE status = 'executing' ORDER BY id")]
            out = []
            for execution_id in ids:
                conn.execute(
                    "UPDATE executions SET status = 'unknown', finished_at = ?, error = ? WHERE id = ? AND status = 'executing'",
                    (now, "the engine stopped while this ran; its outcome is unknown", execution_id),
                )
                execution = self._execution(conn, execution_id)
                assert execution is not None
                self._move_proposal(
                    conn, execution.proposal_id, "failed", actor=actor, at=now,
                    detail="interrupted: the engine stopped while it ran; outcome unknown, not re-run",
                    data={"execution": execution_id}, ticket=TicketAct(status=ESCALATED),
                )
                out.append(execution)
            return out

    def executions(self, *, ticket_id: int | None = None, limit: int = 100) -> list[Execution]:
        """Newest first."""
        where, args = ("WHERE ticket_id = ?", (ticket_id,)) if ticket_id is not None else ("", ())
        with self._reading() as conn:
            rows = conn.execute(f"SELECT {_EXECUTION_COLUMNS} FROM executions {where} ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        return [_execution_from_row(r) for r in rows]

    @staticmethod
    def _execution(conn: Conn, execution_id: int) -> Execution | None:
        row = conn.execute(f"SELECT {_EXECUTION_COLUMNS} FROM executions WHERE id = ?", (execution_id,)).fetchone()
        return None if row is None else _execution_from_row(row)

    def last_execution_at(self, action: str, entity_key: str) -> float | None:
        """When `action` last started for this entity (any outcome): the cooldown's reference."""
        with self._reading() as conn:
            row = conn.execute(
                "SELECT MAX(started_at) FROM executions WHERE action = ? AND entity_key = ?", (action, entity_key)
            ).fetchone()
        return row[0]

    def limits(self, rule: StartRule, ticket: Ticket, *, proposal_id: int | None, now: float) -> Refusal | None:
        """The gates from cooldown on, as `begin_execution` checks them again (engine.store.limits)."""
        with self._reading() as conn:
            return store_refusal(conn, rule, ticket, proposal_id=proposal_id, now=now, early=False)

    def attempts(self, ticket_id: int, action: str) -> int:
        """How many times `action` ran (or started) for this ticket."""
        with self._reading() as conn:
            return int(conn.execute(
                "SELECT COUNT(*) FROM executions WHERE ticket_id = ? AND action = ?", (ticket_id, action)
            ).fetchone()[0])

    # ------------------------------------------------------------------ acting: switches

    def killed(self) -> dict[str, Any] | None:
        """The kill switch: None when off, else who turned it on, when and why."""
        with self._reading() as conn:
            return self._switch(conn, KILL_SWITCH)

    def mode_override(self) -> str | None:
        """The mode set by `opctl mode`, overriding the config's (None: the config's)."""
        found = self.mode_setting()
        return None if found is None else str(found["value"])

    def mode_setting(self) -> dict[str, Any] | None:
        """The persisted mode override with who set it and when; None: the config's mode applies."""
        with self._reading() as conn:
            return self._switch(conn, MODE_SWITCH)

    @staticmethod
    def _switch(conn: Conn, name: str) -> dict[str, Any] | None:
        row = conn.execute("SELECT value, actor, at FROM switches WHERE name = ?", (name,)).fetchone()
        return None if row is None else {"value": row[0], "actor": row[1], "at": row[2]}

    def kill(self, *, actor: str, reason: str = "") -> list[Proposal]:
        """Turn the kill switch on and cancel every proposal waiting for approval or approved.
        Returns the cancelled proposals. Turning it on twice is allowed (the reason is updated)."""
        now = self._clock()
        with self._transaction() as conn:
            conn.execute(
                _SWITCH_UPSERT, (KILL_SWITCH, reason or "on", actor, now)
            )
            self._insert_event(conn, "kill_switch", None, None, None, actor, now, {"on": True, "reason": reason})
            ids = [r[0] for r in conn.execute("SELECT id FROM proposals WHERE status IN ('awaiting_approval', 'approved') ORDER BY id")]
            return [
                self._move_proposal(conn, pid, "cancelled", actor=actor, at=now, detail="the kill switch was turned on",
                                    ticket=TicketAct(parked=PARKED_KILLED))
                for pid in ids
            ]

    def resume(self, *, actor: str, reason: str = "") -> int:
        """Turn the kill switch off; tickets parked by it become due again. Returns how many."""
        now = self._clock()
        with self._transaction() as conn:
            if self._switch(conn, KILL_SWITCH) is None:
                raise StoreError("the kill switch is not on; nothing to resume")
            conn.execute("DELETE FROM switches WHERE name = ?", (KILL_SWITCH,))
            count = self._unpark(conn, PARKED_KILLED)
            self._insert_event(conn, "kill_switch", None, None, None, actor, now, {"on": False, "reason": reason, "tickets_resumed": count})
            return count

    def set_mode(self, mode: str, *, actor: str) -> None:
        """Override the config's mode (persisted). Leaving observe makes tickets parked in observe
        mode due again, so their proposals are gated and acted on under the new mode."""
        if mode not in ("observe", "approve", "execute"):
            raise StoreError(f"unknown mode {mode!r}; use observe, approve or execute")
        now = self._clock()
        with self._transaction() as conn:
            conn.execute(_SWITCH_UPSERT, (MODE_SWITCH, mode, actor, now))
            count = 0
            if mode != "observe":
                count = self._unpark(conn, PARKED_OBSERVE)
            self._insert_event(conn, "mode", None, None, None, actor, now, {"mode": mode, "tickets_resumed": count})

    @staticmethod
    def _unpark(conn: Conn, parked: str) -> int:
        """Open tickets parked for this reason become due again; how many."""
        return int(conn.execute(
            f"UPDATE tickets SET parked = NULL, next_attempt_at = NULL WHERE parked = ? AND status = '{OPEN}'", (parked,)
        ).rowcount)

    def clear_mode(self, *, actor: str, then: str | None = None) -> bool:
        """Drop the mode override: the config's mode (`then`, when known) applies again. Tickets
        parked in observe mode become due again unless `then` is observe. False: no override."""
        now = self._clock()
        with self._transaction() as conn:
            if self._switch(conn, MODE_SWITCH) is None:
                return False
            conn.execute("DELETE FROM switches WHERE name = ?", (MODE_SWITCH,))
            count = 0
            if then != "observe":
                count = self._unpark(conn, PARKED_OBSERVE)
            self._insert_event(conn, "mode", None, None, None, actor, now, {"mode": then, "cleared": True, "tickets_resumed": count})
            return True

    # ------------------------------------------------------------------ diagnoses and token spend

    def cached_diagnosis(self, fingerprint: str) -> str | None:
        """The JSON of the diagnosis cached under `fingerprint` (see engine.act.records)."""
        with self._reading() as conn:
            row = conn.execute("SELECT diagnosis FROM diagnoses WHERE fingerprint = ?", (fingerprint,)).fetchone()
        return None if row is None else str(row[0])

    def cache_diagnosis(self, fingerprint: str, diagnosis_json: str, at: float) -> None:
        with self._transaction() as conn:
            conn.execute(_DIAGNOSIS_UPSERT, (fingerprint, at, diagnosis_json))

    def tokens_spent_since(self, since: float) -> int:
        with self._reading() as conn:
            row = conn.execute("SELECT COALESCE(SUM(input_tokens + output_tokens), 0) FROM token_spend WHERE at >= ?", (since,)).fetchone()
        return int(row[0])

    def record_tokens(
        self, ticket_id: int | None, provider: str, model: str | None, input_tokens: int, output_tokens: int, at: float
    ) -> None:
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO token_spend (ticket_id, provider, model, input_tokens, output_tokens, at) VALUES (?, ?, ?, ?, ?, ?)",
                (ticket_id, provider, model, input_tokens, output_tokens, at),
            )

    def tokens_by_ticket(self, ticket_id: int) -> tuple[int, int]:
        """(input, output) tokens spent on one ticket."""
        with self._reading() as conn:
            row = conn.execute(
                "SELECT COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0) FROM token_spend WHERE ticket_id = ?", (ticket_id,)
            ).fetchone()
        return int(row[0]), int(row[1])
