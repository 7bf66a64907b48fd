"""Reverts: what undoes an action, run after its ticket resolved, so the system ends as it was
before the operator touched it (an action's `revert` in the config).

A revert is armed when its action succeeds (in the execution's transaction). Each tick, every
armed revert whose ticket has resolved goes, oldest first:

1. If it has a proposal: succeeded → done; failed, rejected, expired or refused → given up (the
   ticket says why); approved → run now, after every gate again; awaiting approval or executing
   → wait; proposed in observe mode → wait while the mode is observe; cancelled (the kill switch)
   or proposed in a mode since left → made again below.
2. Its `when`, over the tick's observations with the action's `params` and `now`: until it holds
   the revert waits (each reason for waiting is written on the ticket once).
3. Its params (CEL over the same), then every gate, the gate asking for a resolved ticket where
   a remediation needs a firing one: a temporary refusal (the kill switch, a cooldown, a budget)
   waits; any other is recorded as a refused proposal and the revert is given up.
4. The current mode, as for every proposal: observe records it, approve (or `approval:
   required`) waits for a human, execute runs it. A success is `done`.

Everything is a proposal (source `revert`) and events on the same ticket, so `opctl tickets show`
tells the whole story, and a crash between the resolution and the revert loses nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from engine.act.gate import ActionGate, Cleared, Refusal
from engine.act.modes import by_mode
from engine.act.running import Runner
from engine.config.models import Config, Revert
from engine.errors import ExpressionError
from engine.expr import compile_expr, to_python
from engine.redact import Redactor
from engine.store import ArmedRevert, Proposal, Store, Ticket

if TYPE_CHECKING:
    from engine.act.actor import ActReport

GIVE_UP = ("failed", "rejected", "expired", "refused")


class Reverter:
    def __init__(
        self, config: Config, store: Store, gate: ActionGate, runner: Runner, redactor: Redactor, clock: Callable[[], float] = time.time
    ) -> None:
        self.config = config
        self.store = store
        self.gate = gate
        self.runner = runner
        self.redactor = redactor
        self.clock = clock

    async def step(self, *, now: float, mode: str, values: Mapping[str, Any], previous: Mapping[str, Any], report: ActReport) -> None:
        for armed in self.store.armed_reverts():
            await self._one(armed, now, mode, values, previous, report)

    async def _one(
        self, armed: ArmedRevert, now: float, mode: str, values: Mapping[str, Any], previous: Mapping[str, Any], report: ActReport
    ) -> None:
        source = self.config.action(armed.action)
        spec = None if source is None else source.revert
        if spec is None:
            self._close(armed, False, f"the config no longer declares a revert for {armed.action}", now)
            return
        ticket = self.store.ticket(armed.ticket_id)
        assert ticket is not None  # a foreign key
        proposal = None if armed.proposal_id is None else self.store.proposal(armed.proposal_id)
        if proposal is not None:
            if proposal.status == "succeeded":
                self._close(armed, True, f"{proposal.action} #{proposal.id} ran", now)
                return
            if proposal.status in GIVE_UP:
                self._close(armed, False, f"{proposal.action} #{proposal.id} {proposal.status}: {proposal.detail or ''}".rstrip(": "), now)
                return
            if proposal.status == "approved":
                await self._run_approved(armed, proposal, ticket, now, previous, report)
                return
            if proposal.status in ("awaiting_approval", "executing") or (proposal.status == "proposed" and mode == "observe"):
                return
            self.store.rearm_revert(armed.id)  # cancelled by the kill switch, or observe mode left
        env = {**values, "params": armed.params, "now": now, "vars": self.config.variable_values()}
        if spec.when is not None and not _holds(spec.when, env):
            self.store.revert_waits(armed.id, f"waiting for its `when` to hold: {spec.when}", at=now)
            return
        try:
            params = self.redactor.value(_params(spec, env))
        except ExpressionError as exc:
            self._close(armed, False, f"the params of the revert could not be evaluated: {exc}", now)
            return
        decision = await self.gate.check(ticket=ticket, firing=False, action_name=spec.action, params=params, now=now, prev=previous, revert=True)
        common: dict[str, Any] = {
            "action": spec.action, "params": params, "at": now,
            "reason": f"undoes {armed.action}{_listing(armed.params)} (execution #{armed.execution_id}) now that ticket #{ticket.id} has resolved",
        }  # fmt: skip
        if isinstance(decision, Refusal):
            reason = self.redactor.text(decision.reason)
            if decision.temporary:
                self.store.revert_waits(armed.id, f"gate {decision.gate}: {reason}", at=now)
                return
            refused = self.store.propose_revert(armed.id, status="refused", gate=decision.gate, detail=reason, **common)
            report.add(refused, gate=decision.gate, reason=reason)
            self._close(armed, False, f"refused by gate {decision.gate}: {reason}", now)
            return
        decided = by_mode(mode, decision.action, approval_ttl=self.config.gate.approval_ttl, now=now)
        proposal = self.store.propose_revert(armed.id, status=decided.status, detail=decided.detail, expires_at=decided.expires_at, **common)
        if proposal.status == "approved":
            await self._execute(armed, proposal, decision, report)
        else:
            report.add(proposal)

    async def _run_approved(
        self, armed: ArmedRevert, proposal: Proposal, ticket: Ticket, now: float, previous: Mapping[str, Any], report: ActReport
    ) -> None:
        decision = await self.gate.check(
            ticket=ticket, firing=False, action_name=proposal.action, params=proposal.params, now=now, prev=previous,
            proposal_id=proposal.id, revert=True,
        )  # fmt: skip
        if isinstance(decision, Refusal):
            reason = self.redactor.text(decision.reason)
            refused = self.store.refuse_proposal(proposal.id, Refusal(decision.gate, reason, decision.retry_at, decision.park), at=now)
            report.add(refused, gate=decision.gate, reason=reason)
            if refused.status == "refused":
                self._after_refusal(armed, decision, reason, now)
            return
        await self._execute(armed, proposal, decision, report)

    def _after_refusal(self, armed: ArmedRevert, refusal: Refusal, reason: str, now: float) -> None:
        if refusal.temporary:
            self.store.rearm_revert(armed.id)  # a new proposal once the limit frees
            self.store.revert_waits(armed.id, f"gate {refusal.gate}: {reason}", at=now)
        else:
            self._close(armed, False, f"refused by gate {refusal.gate}: {reason}", now)

    async def _execute(self, armed: ArmedRevert, proposal: Proposal, cleared: Cleared, report: ActReport) -> None:
        run = await self.runner.run(proposal, cleared)
        if isinstance(run, Refusal):  # the start's last check: nothing was sent
            current = self.store.proposal(proposal.id)
            assert current is not None
            reason = self.redactor.text(run.reason)
            report.add(current, gate=run.gate, reason=reason)
            if current.status == "refused":
                self._after_refusal(armed, run, reason, self.clock())
            return
        self.runner.finish(run)
        outcome = run.outcome
        reason = f"{proposal.action} #{proposal.id} ran: {outcome.status}" if outcome.ok else f"{proposal.action} #{proposal.id} failed: {outcome.error or outcome.status}"
        self._close(armed, outcome.ok, self.redactor.text(reason), run.finished_at)
        done = self.store.proposal(proposal.id)
        assert done is not None
        report.add(done, request=cleared.request.line, outcome=outcome.status)

    def _close(self, armed: ArmedRevert, done: bool, reason: str, at: float) -> None:
        self.store.close_revert(armed.id, done=done, reason=reason, at=at)


def _holds(source: str, env: Mapping[str, Any]) -> bool:
    compiled = compile_expr(source)
    try:
        return to_python(compiled.evaluate({n: env[n] for n in compiled.names if n in env})) is True
    except ExpressionError:
        return False  # e.g. an observation it reads failed this tick: not yet


def _params(spec: Revert, env: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for name, source in spec.params.items():
        compiled = compile_expr(source)
        out[name] = to_python(compiled.evaluate({n: env[n] for n in compiled.names if n in env}))
    return out


def _listing(params: Mapping[str, Any]) -> str:
    return "(" + ", ".join(f"{k}={v}" for k, v in params.items()) + ")" if params else ""
