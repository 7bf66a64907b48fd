"""The gates that read the store (kill switch, ticket status, cooldown, budget, in-flight,
attempts), as one function over one connection: the action gate asks it before the guard's I/O,
and `begin_execution` asks it again inside the transaction that starts the execution, so the
last word is atomic (two processes cannot both pass it for one proposal or one ticket).

    rule = StartRule.of(action, entity_key, total_budget_per_hour=20)
    refusal = store_refusal(conn, rule, ticket, proposal_id=7, now=now)   # None: it may start
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.durations import format_duration
from engine.store.base import Conn
from engine.store.records import Ticket
from engine.store.statuses import _LIVE, KILL_SWITCH, OPEN, PARKED_KILLED, VERIFYING

HOUR = 3600.0


@dataclass(frozen=True)
class Refusal:
    gate: str
    reason: str
    retry_at: float | None = None  # cooldown / budget: a new attempt may pass from then
    park: str | None = None  # kill switch: wait until resumed

    @property
    def temporary(self) -> bool:
        return self.retry_at is not None or self.park is not None


@dataclass(frozen=True)
class StartRule:
    """What starting one action for one entity must satisfy (from the action's declaration)."""

    action: str
    entity_key: str
    cooldown: float
    max_attempts: int
    budget_per_hour: int | None
    total_budget_per_hour: int
    revert: bool = False  # a revert runs once its ticket resolved; in-flight asks only for no other live proposal

    @classmethod
    def of(cls, action: Any, entity_key: str, *, total_budget_per_hour: int, revert: bool = False) -> StartRule:
        return cls(action.name, entity_key, action.cooldown, action.max_attempts, action.budget_per_hour,
                   total_budget_per_hour, revert)  # fmt: skip


def store_refusal(
    conn: Conn, rule: StartRule, ticket: Ticket, *, proposal_id: int | None, now: float, early: bool = True
) -> Refusal | None:
    """The first of the store's gates that refuses, in the gate's order; None when all pass.
    `early=False`: the caller checked the kill switch and the ticket itself (the gate does so
    first, before its I/O); from cooldown on, the gates are this function's."""
    if early:
        row = conn.execute("SELECT actor FROM switches WHERE name = ?", (KILL_SWITCH,)).fetchone()
        if row is not None:
            return Refusal("kill_switch", f"the kill switch is on (turned on by {row[0]})", park=PARKED_KILLED)
        if rule.revert and ticket.is_open:
            return Refusal("firing", f"ticket #{ticket.id} is {ticket.status}: a revert runs only once it has resolved")
        if not rule.revert and not ticket.is_open:
            return Refusal("firing", f"ticket #{ticket.id} is resolved; nothing to fix")
    subject = ticket.entity_key or "the cluster"
    last = conn.execute(
        "SELECT MAX(started_at) FROM executions WHERE action = ? AND entity_key = ?", (rule.action, rule.entity_key)
    ).fetchone()[0]
    if last is not None and now - last < rule.cooldown:
        return Refusal("cooldown", f"{rule.action} ran for {subject!r} {format_duration(now - last)} ago; "
                       f"its cooldown is {format_duration(rule.cooldown)}", retry_at=last + rule.cooldown)  # fmt: skip
    budget = _budget(conn, rule, now)
    if budget is not None:
        return budget
    if not rule.revert and ticket.status == VERIFYING:
        return Refusal("in_flight", f"ticket #{ticket.id} is verifying proposal #{ticket.verify_proposal_id}")
    if not rule.revert and ticket.status != OPEN:
        return Refusal("in_flight", f"ticket #{ticket.id} is {ticket.status}: a human decides what happens next")
    other = conn.execute(
        f"SELECT id, action, status FROM proposals WHERE ticket_id = ? AND status IN {_LIVE} AND id != ? ORDER BY id LIMIT 1",
        (ticket.id, -1 if proposal_id is None else proposal_id),
    ).fetchone()
    if other is not None:
        return Refusal("in_flight", f"ticket #{ticket.id} already has proposal #{other[0]} ({other[1]}) {other[2].replace('_', ' ')}")
    attempts = int(conn.execute(
        "SELECT COUNT(*) FROM executions WHERE ticket_id = ? AND action = ?", (ticket.id, rule.action)
    ).fetchone()[0])  # fmt: skip
    if attempts >= rule.max_attempts:
        return Refusal("attempts", f"{rule.action} already ran {attempts} time(s) for ticket #{ticket.id}; max_attempts is {rule.max_attempts}")
    return None


def _budget(conn: Conn, rule: StartRule, now: float) -> Refusal | None:
    since = now - HOUR
    if rule.budget_per_hour is not None:
        times = _times(conn, since, rule.action)
        if len(times) >= rule.budget_per_hour:
            return Refusal("budget", f"{rule.action} ran {len(times)} time(s) in the last hour; its budget_per_hour is {rule.budget_per_hour}",
                           retry_at=times[len(times) - rule.budget_per_hour] + HOUR)  # fmt: skip
    times = _times(conn, since, None)
    limit = rule.total_budget_per_hour
    if len(times) >= limit:
        return Refusal("budget", f"{len(times)} action(s) ran in the last hour; gate.budget_per_hour is {limit}",
                       retry_at=times[len(times) - limit] + HOUR)
    return None


def _times(conn: Conn, since: float, action: str | None) -> list[float]:
    query = "SELECT started_at FROM executions WHERE started_at > ?"
    args: tuple[Any, ...] = (since,)
    if action is not None:
        query += " AND action = ?"
        args += (action,)
    return [r[0] for r in conn.execute(query + " ORDER BY started_at", args)]
