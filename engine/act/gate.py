"""The action gate: whatever a model or runbook proposes runs only if every gate agrees.

Gates, in this order (the first refusal wins and is recorded with its reason):

1. kill_switch  the persisted kill switch is off (read from the store every time);
2. firing       the ticket is open and its entity is firing right now (for a revert: the
                ticket has resolved);
3. declared     the action is declared in the config;
4. params       the params are valid against the action's JSON Schema (`format` included), and
                fill its request (no param may make a `.`/`..` path segment);
5. guard        its `when` is true on FRESH observations (re-run now), with `params`, `now`, `prev`;
6. cooldown     the action did not start for this entity within its `cooldown`;
7. budget       fewer than `budget_per_hour` runs of the action, and of all actions
                (`gate.budget_per_hour`), started in the last hour;
8. in_flight    the ticket is `open` (not verifying or escalated) and no other action of it is
                waiting for approval, approved or executing;
9. attempts     the action ran fewer than `max_attempts` times for this ticket.

A refusal says whether it is temporary: the kill switch parks the ticket until `opctl resume`;
cooldown and budget give the time from which a new attempt may pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema

from engine.act.fresh import Observe, on_fresh
from engine.act.request import ActionRequest, render_request
from engine.config.models import Action, Config
from engine.durations import format_duration
from engine.errors import ActionRefused
from engine.store import OPEN, PARKED_KILLED, VERIFYING, Store, Ticket

GATES = ("kill_switch", "firing", "declared", "params", "guard", "cooldown", "budget", "in_flight", "attempts")
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
class Cleared:
    action: Action
    request: ActionRequest


class ActionGate:
    """Checks one proposed (action, params) for one ticket against every gate, in order."""

    def __init__(self, config: Config, store: Store, observe: Observe) -> None:
        self.config = config
        self.store = store
        self.observe = observe

    async def check(
        self,
        *,
        ticket: Ticket,
        firing: bool,
        action_name: str,
        params: Mapping[str, Any],
        now: float,
        prev: Mapping[str, Any],
        proposal_id: int | None = None,
        revert: bool = False,
    ) -> Cleared | Refusal:
        """`revert`: the action undoes one that ran for this ticket, whose gate 2 is then the
        opposite: the ticket has resolved (and gate 8 only asks for no other live proposal)."""
        try:
            return await self._check(ticket, firing, action_name, params, now, prev, proposal_id, revert)
        except _Refused as refused:
            return refused.refusal

    async def _check(
        self, ticket: Ticket, firing: bool, name: str, params: Mapping[str, Any], now: float, prev: Mapping[str, Any],
        proposal_id: int | None, revert: bool,
    ) -> Cleared:  # fmt: skip
        killed = self.store.killed()
        if killed is not None:
            refuse("kill_switch", f"the kill switch is on (turned on by {killed['actor']})", park=PARKED_KILLED)
        if revert:
            if ticket.is_open:
                refuse("firing", f"ticket #{ticket.id} is {ticket.status}: a revert runs only once it has resolved")
        elif not ticket.is_open:
            refuse("firing", f"ticket #{ticket.id} is resolved; nothing to fix")
        elif not firing:
            refuse("firing", f"the invariant {ticket.invariant} no longer fires for {ticket.entity_key or 'the cluster'!r}")
        action = self.config.action(name)
        if action is None:
            declared = ", ".join(a.name for a in self.config.actions) or "none"
            refuse("declared", f"action {name!r} is not declared (declared actions: {declared})")
        assert action is not None
        request = self._params(action, params)
        await self._guard(action, params, now, prev)
        last = self.store.last_execution_at(action.name, ticket.entity_key)
        if last is not None and now - last < action.cooldown:
            refuse("cooldown", f"{action.name} ran for {ticket.entity_key or 'the cluster'!r} {format_duration(now - last)} ago; "
                   f"its cooldown is {format_duration(action.cooldown)}", retry_at=last + action.cooldown)
        self._budget(action, now)
        self._in_flight(ticket, proposal_id, revert)
        attempts = self.store.attempts(ticket.id, action.name)
        if attempts >= action.max_attempts:
            refuse("attempts", f"{action.name} already ran {attempts} time(s) for ticket #{ticket.id}; max_attempts is {action.max_attempts}")
        return Cleared(action, request)

    # ------------------------------------------------------------------ gates

    @staticmethod
    def _params(action: Action, params: Mapping[str, Any]) -> ActionRequest:
        validator = jsonschema.Draft202012Validator(action.params, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
        errors = sorted(validator.iter_errors(dict(params)), key=lambda e: list(e.absolute_path))
        if errors:
            described = "; ".join(_schema_error(e) for e in errors[:3])
            refuse("params", f"params of {action.name} are invalid: {described}")
        try:
            return render_request(action, params)
        except ActionRefused as exc:
            raise _Refused(Refusal(exc.gate, exc.reason)) from None

    async def _guard(self, action: Action, params: Mapping[str, Any], now: float, prev: Mapping[str, Any]) -> None:
        if action.when is None:
            return
        verdict = await on_fresh(self.config, self.observe, action.when, params=params, now=now, prev=prev)
        if verdict.failure is not None:
            refuse("guard", f"the guard of {action.name}: {verdict.failure}")
        if not verdict.holds:
            refuse("guard", f"the guard of {action.name} ({action.when}) is {verdict.value!r} on fresh observations")

    def _budget(self, action: Action, now: float) -> None:
        if action.budget_per_hour is not None:
            times = self.store.execution_times_since(now - HOUR, action.name)
            if len(times) >= action.budget_per_hour:
                refuse("budget", f"{action.name} ran {len(times)} time(s) in the last hour; its budget_per_hour is {action.budget_per_hour}",
                       retry_at=times[len(times) - action.budget_per_hour] + HOUR)
        limit = self.config.gate.budget_per_hour
        times = self.store.execution_times_since(now - HOUR)
        if len(times) >= limit:
            refuse("budget", f"{len(times)} action(s) ran in the last hour; gate.budget_per_hour is {limit}",
                   retry_at=times[len(times) - limit] + HOUR)

    def _in_flight(self, ticket: Ticket, proposal_id: int | None, revert: bool) -> None:
        if not revert and ticket.status == VERIFYING:
            refuse("in_flight", f"ticket #{ticket.id} is verifying proposal #{ticket.verify_proposal_id}")
        if not revert and ticket.status != OPEN:
            refuse("in_flight", f"ticket #{ticket.id} is {ticket.status}: a human decides what happens next")
        others = [p for p in self.store.live_proposals(ticket.id) if p.id != proposal_id]
        if others:
            p = others[0]
            refuse("in_flight", f"ticket #{ticket.id} already has proposal #{p.id} ({p.action}) {p.status.replace('_', ' ')}")


class _Refused(Exception):
    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.reason)
        self.refusal = refusal


def refuse(gate: str, reason: str, *, retry_at: float | None = None, park: str | None = None) -> None:
    raise _Refused(Refusal(gate, reason, retry_at, park))


def _schema_error(error: jsonschema.ValidationError) -> str:
    where = ".".join(str(p) for p in error.absolute_path)
    return f"{where}: {error.message}" if where else error.message
