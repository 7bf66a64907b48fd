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

Gates 6-9 are the store's (engine.store.limits), and the last word is the store's too:
`Store.begin_execution` checks the kill switch, the proposal's and ticket's status and gates 6-9
again in the transaction that starts the execution, after the guard's I/O, so a reject or the
kill switch during a slow guard always wins. The guard's observations have their own deadline
(`gate.guard_timeout`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncio

import jsonschema

from engine.act.fresh import Observe, on_fresh
from engine.act.request import ActionRequest, render_request
from engine.config.models import Action, Config
from engine.durations import format_duration
from engine.errors import ActionRefused
from engine.store import PARKED_KILLED, Refusal, StartRule, Store, Ticket

GATES = ("kill_switch", "firing", "declared", "params", "guard", "cooldown", "budget", "in_flight", "attempts")
__all__ = ["GATES", "ActionGate", "Cleared", "Refusal", "refuse"]


@dataclass(frozen=True)
class Cleared:
    action: Action
    request: ActionRequest
    rule: StartRule  # what the start re-checks, in its own transaction


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
        rule = StartRule.of(action, ticket.entity_key, total_budget_per_hour=self.config.gate.budget_per_hour, revert=revert)
        limited = self.store.limits(rule, ticket, proposal_id=proposal_id, now=now)
        if limited is not None:
            raise _Refused(limited)
        return Cleared(action, request, rule)

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
        deadline = self.config.gate.guard_timeout
        try:
            async with asyncio.timeout(deadline):
                verdict = await on_fresh(self.config, self.observe, action.when, params=params, now=now, prev=prev)
        except TimeoutError:
            refuse("guard", f"the guard of {action.name}: its observations did not answer within gate.guard_timeout ({format_duration(deadline)})")
        if verdict.failure is not None:
            refuse("guard", f"the guard of {action.name}: {verdict.failure}")
        if not verdict.holds:
            refuse("guard", f"the guard of {action.name} ({action.when}) is {verdict.value!r} on fresh observations")


class _Refused(Exception):
    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.reason)
        self.refusal = refusal


def refuse(gate: str, reason: str, *, retry_at: float | None = None, park: str | None = None) -> None:
    raise _Refused(Refusal(gate, reason, retry_at, park))


def _schema_error(error: jsonschema.ValidationError) -> str:
    where = ".".join(str(p) for p in error.absolute_path)
    return f"{where}: {error.message}" if where else error.message
