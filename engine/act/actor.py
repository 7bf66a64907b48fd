"""The acting stage of a tick: diagnose → propose → gate → (wait for approval | execute) → verify.

`Actor.step()` runs once per tick, after the tick's states and tickets are stored:

1. proposals waiting for approval past `gate.approval_ttl` expire (their tickets escalate);
2. verifying tickets past their deadline: a new attempt after the action's cooldown while its
   attempts remain, else escalated (the `resolved` transition itself, which credits the action
   with a `verified` event when its effect was confirmed, is written by `Store.apply_tick`);
3. approved proposals (from any process) run, after every gate is checked again;
4. due tickets (open, not held, not parked, without a live proposal) are diagnosed; each
   recommended action becomes a proposal, is gated, and then by mode: `observe` records it,
   `approve` (or `approval: required`) waits for a human, `execute` runs it now. When nothing
   could be proposed: a temporary refusal (cooldown, budget) schedules a new attempt, the kill
   switch parks the ticket until `opctl resume`, anything else escalates it;
5. armed reverts of resolved tickets run once their `when` holds (engine.act.revert).

Before the tick is stored, `confirm_effects` checks the `verify.expr` of actions whose tickets
verify (engine.act.effects): a recovery credits an action only when its effect was confirmed.

Every step is an event on the ticket; values from models and systems are redacted first.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.act.effects import EffectCheck
from engine.act.executor import Executor
from engine.act.gate import ActionGate, Cleared, Observe, Refusal
from engine.act.modes import by_mode
from engine.act.records import StoreDiagnosisCache
from engine.act.revert import Reverter
from engine.act.running import Runner
from engine.config.validate import LoadedConfig
from engine.diagnose import Diagnoser, Diagnosis, DiagnosisRequest
from engine.evaluate import Entity, EntityState
from engine.observe.values import one_line
from engine.redact import Redactor
from engine.store import (
    ESCALATED,
    PARKED_NO_ACTION,
    PARKED_OBSERVE,
    REVERT_SOURCE,
    VERIFYING,
    Proposal,
    Store,
    Ticket,
    TicketAct,
)

DIAGNOSIS_RETRY_S = 60.0  # after an unexpected diagnosis failure


@dataclass
class ActReport:
    """What the acting stage did in one tick (for the tick report)."""

    entries: list[dict[str, Any]] = field(default_factory=list)

    def add(self, proposal: Proposal, **extra: Any) -> None:
        self.entries.append({"ticket": proposal.ticket_id, "proposal": proposal.id, "action": proposal.action, "status": proposal.status, **extra})


class Actor:
    def __init__(
        self,
        loaded: LoadedConfig,
        *,
        store: Store,
        observe: Observe,
        diagnoser: Diagnoser,
        executor: Executor,
        cache: StoreDiagnosisCache | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.loaded = loaded
        self.config = loaded.config
        self.store = store
        self.diagnoser = diagnoser
        self.executor = executor
        self.cache = cache
        self.clock = clock
        self.gate = ActionGate(self.config, store, observe)
        self.redactor = Redactor(loaded.secrets)
        self.runner = Runner(store, executor, self.redactor, clock)
        self.effects = EffectCheck(self.config, store)
        self.reverter = Reverter(self.config, store, self.gate, self.runner, self.redactor, clock)

    def mode(self) -> str:
        return self.store.mode_override() or self.config.mode

    async def step(
        self,
        *,
        now: float,
        states: Mapping[tuple[str, str], EntityState],
        entities: Mapping[tuple[str, str], Entity],
        values: Mapping[str, Any],
        previous: Mapping[str, Any],
        admit: Callable[[Ticket], bool] | None = None,
    ) -> ActReport:
        """`admit`: may a due ticket be attempted now (engine.incidents: not muted, its
        incident's lead); None admits every due ticket."""
        report = ActReport()
        for proposal in self.store.expire_proposals(now):
            report.add(proposal)
        self._verification_deadlines(now)
        for proposal in reversed(self.store.proposals(status="approved", limit=10_000)):
            if proposal.source != REVERT_SOURCE:  # a revert's gates differ: the reverter runs it
                await self._run_approved(proposal, now, states, previous, report)
        mode = self.mode()
        for ticket in self.store.due_tickets(now):
            if admit is not None and not admit(ticket):
                continue
            await self._attempt(ticket, mode, now, states, entities, values, previous, report)
        await self.reverter.step(now=now, mode=mode, values=values, previous=previous, report=report)
        return report

    def confirm_effects(self, observed: Mapping[str, Any], now: float) -> None:
        """Before a tick is stored: which actions of verifying tickets did what they are for,
        on what the tick observed (see engine.act.effects)."""
        self.effects.confirm(observed, now)

    # ------------------------------------------------------------------ verification

    def _verification_deadlines(self, now: float) -> None:
        for ticket in self.store.verifying_tickets():
            if ticket.verify_deadline is None or ticket.verify_deadline > now:
                continue
            proposal = None if ticket.verify_proposal_id is None else self.store.proposal(ticket.verify_proposal_id)
            action = None if proposal is None else self.config.action(proposal.action)
            attempts = 0 if proposal is None else self.store.attempts(ticket.id, proposal.action)
            data: dict[str, Any] = {"proposal": ticket.verify_proposal_id, "action": proposal.action if proposal else None, "attempts": attempts}
            cleared = {"verify_deadline": None, "verify_proposal_id": None}
            if action is not None and attempts < action.max_attempts:
                last = self.store.last_execution_at(action.name, ticket.entity_key) or now
                retry = max(now, last + action.cooldown)
                data.update(max_attempts=action.max_attempts, next_attempt_at=retry,
                            reason="the invariant still does not hold after the verification window; a new attempt after the cooldown")
                self.store.update_ticket_act(ticket.id, TicketAct(status="open", next_attempt_at=retry, **cleared),
                                             kind="verification_failed", data=data, actor="engine", at=now)
            else:
                data.update(max_attempts=action.max_attempts if action else None,
                            reason="the invariant still does not hold after the verification window, and no attempt is left")
                self.store.update_ticket_act(ticket.id, TicketAct(status=ESCALATED, **cleared),
                                             kind="escalated", data=data, actor="engine", at=now)

    # ------------------------------------------------------------------ approved proposals

    async def _run_approved(
        self, proposal: Proposal, now: float, states: Mapping[tuple[str, str], EntityState], previous: Mapping[str, Any], report: ActReport
    ) -> None:
        ticket = self.store.ticket(proposal.ticket_id)
        assert ticket is not None  # a foreign key
        decision = await self.gate.check(
            ticket=ticket, firing=_firing(ticket, states), action_name=proposal.action, params=proposal.params,
            now=now, prev=previous, proposal_id=proposal.id,
        )
        if isinstance(decision, Refusal):
            change = self._after_refusals(ticket, [decision], now)[0]
            refusal = Refusal(decision.gate, self.redactor.text(decision.reason), decision.retry_at, decision.park)
            refused = self.store.refuse_proposal(proposal.id, refusal, at=now, ticket=change)
            report.add(refused, gate=decision.gate, reason=refusal.reason)
            return
        refusal = await self._execute(proposal, decision, ticket, report)
        if refusal is not None and self._refused(proposal):
            change, kind, data = self._after_refusals(ticket, [refusal], now)
            self.store.update_ticket_act(ticket.id, change, kind=kind, data=data, actor="engine", at=now)

    # ------------------------------------------------------------------ one attempt at a ticket

    async def _attempt(
        self,
        ticket: Ticket,
        mode: str,
        now: float,
        states: Mapping[tuple[str, str], EntityState],
        entities: Mapping[tuple[str, str], Entity],
        values: Mapping[str, Any],
        previous: Mapping[str, Any],
        report: ActReport,
    ) -> None:
        invariant = self.config.invariant(ticket.invariant, ticket.entity_key)
        if invariant is None:
            self.store.update_ticket_act(ticket.id, TicketAct(parked=PARKED_NO_ACTION), kind="no_action", actor="engine", at=now,
                                         data={"reason": f"the config no longer declares invariant {ticket.invariant!r}"})
            return
        entity = entities.get((ticket.invariant, ticket.entity_key))
        request = DiagnosisRequest(
            ticket=ticket,
            invariant=invariant,
            item=entity.item if entity is not None else ticket.snapshot.get("item"),
            key=ticket.entity_key,
            observations=dict(values),
            events=self.store.events(ticket.id),
            similar_tickets=self.store.similar_tickets(ticket.invariant, exclude=ticket.id),
        )
        stored_before = self.cache.stored if self.cache is not None else 0
        try:
            diagnosis = await self.diagnoser.diagnose(request, mode=mode)
        except Exception as exc:  # a defect must not stop the tick; the reason is recorded
            reason = f"{type(exc).__name__}: {one_line(str(exc))}"
            self.store.update_ticket_act(ticket.id, TicketAct(next_attempt_at=now + DIAGNOSIS_RETRY_S), kind="diagnosis_failed",
                                         data={"reason": self.redactor.text(reason)}, actor="engine", at=now)
            return
        cached = self.cache is not None and self.cache.stored == stored_before
        self.store.add_event("diagnosis", ticket_id=ticket.id, actor=f"diagnosis:{diagnosis.provider}", at=now,
                             data=self.redactor.value(diagnosis_event(diagnosis, cached=cached)))
        refusals: list[Refusal] = []
        for unevaluated in diagnosis.unevaluated:  # a runbook entry whose params failed: refused, with why
            refusals.append(Refusal("params", unevaluated.reason))
            refused = self.store.add_proposal(
                ticket.id, status="refused", gate="params", detail=self.redactor.text(unevaluated.reason),
                action=unevaluated.action, params={}, reason="runbook entry", source=diagnosis.provider, at=now)
            report.add(refused, gate="params", reason=refused.detail)
        if not diagnosis.recommended_actions and not refusals:
            self.store.update_ticket_act(ticket.id, TicketAct(parked=PARKED_NO_ACTION), kind="no_action", actor="engine", at=now,
                                         data={"reason": "the diagnosis recommends no declared action; a human should look"})
            return
        proposed = 0
        for recommended in diagnosis.recommended_actions:
            current = self.store.ticket(ticket.id)
            assert current is not None
            params = self.redactor.value(dict(recommended.params))
            common = {"action": recommended.action, "params": params, "reason": self.redactor.text(recommended.reason),
                      "source": diagnosis.provider, "at": now}
            decision = await self.gate.check(
                ticket=current, firing=_firing(current, states), action_name=recommended.action,
                params=recommended.params, now=now, prev=previous,
            )
            if isinstance(decision, Refusal):
                refusals.append(decision)
                refused = self.store.add_proposal(ticket.id, status="refused", gate=decision.gate,
                                                  detail=self.redactor.text(decision.reason), **common)
                report.add(refused, gate=decision.gate, reason=refused.detail)
                continue
            proposed += 1
            decided = by_mode(mode, decision.action, approval_ttl=self.config.gate.approval_ttl, now=now)
            added = self.store.add_proposal(ticket.id, status=decided.status, detail=decided.detail, expires_at=decided.expires_at, **common)
            if added.status == "refused":  # another process left a live proposal first (in-flight, atomically)
                proposed -= 1
                refusals.append(Refusal(added.gate or "in_flight", added.detail or ""))
                report.add(added, gate=added.gate, reason=added.detail)
            elif added.status == "approved":
                refusal = await self._execute(added, decision, current, report)
                if refusal is not None and self._refused(added):  # refused at start: as a gate's refusal
                    proposed -= 1
                    refusals.append(refusal)
            else:
                report.add(added)
        if mode == "observe" and proposed:
            self.store.update_ticket_act(ticket.id, TicketAct(parked=PARKED_OBSERVE), kind="observing", actor="engine", at=now,
                                         data={"reason": "observe mode: proposals recorded, nothing runs until the mode changes"})
        elif not proposed:
            change, kind, data = self._after_refusals(ticket, refusals, now)
            self.store.update_ticket_act(ticket.id, change, kind=kind, data=data, actor="engine", at=now)

    def _after_refusals(self, ticket: Ticket, refusals: list[Refusal], now: float) -> tuple[TicketAct, str, dict[str, Any]]:
        """What a ticket becomes when nothing proposed for it may run."""
        gates = [r.gate for r in refusals]
        parked = next((r.park for r in refusals if r.park is not None), None)
        if parked is not None:
            return TicketAct(parked=parked), "parked", {"reason": "the kill switch is on: no attempt until `opctl resume`", "gates": gates}
        retries = [r.retry_at for r in refusals if r.retry_at is not None]
        if retries:
            retry = min(retries)
            return TicketAct(next_attempt_at=retry), "attempt_scheduled", {"next_attempt_at": retry, "gates": gates,
                                                                           "reason": "refused for now; a new attempt when the limit frees"}
        return TicketAct(status=ESCALATED), "escalated", {"reason": "no safe action: every proposed action was refused", "gates": gates}

    # ------------------------------------------------------------------ execution

    async def _execute(self, proposal: Proposal, cleared: Cleared, ticket: Ticket, report: ActReport) -> Refusal | None:
        """Run it; the refusal when the start's last check refused it (nothing was sent)."""
        action, request = cleared.action, cleared.request
        run = await self.runner.run(proposal, cleared)
        if isinstance(run, Refusal):
            current = self.store.proposal(proposal.id)
            assert current is not None
            report.add(current, gate=run.gate, reason=self.redactor.text(run.reason))
            return run
        outcome, finished = run.outcome, run.finished_at
        if outcome.ok:
            deadline = finished + action.verify.within
            change = TicketAct(status=VERIFYING, verify_deadline=deadline, verify_proposal_id=proposal.id, next_attempt_at=None)
            event = ("verifying", {"proposal": proposal.id, "action": action.name, "verify_deadline": deadline})
        else:
            attempts = self.store.attempts(ticket.id, action.name)
            if attempts < action.max_attempts:
                retry = finished + action.cooldown
                change = TicketAct(next_attempt_at=retry)
                event = ("attempt_scheduled", {"next_attempt_at": retry, "reason": f"{action.name} failed; a new attempt after its cooldown"})
            else:
                change = TicketAct(status=ESCALATED)
                event = ("escalated", {"reason": f"{action.name} failed and no attempt is left", "attempts": attempts})
        self.runner.finish(run, ticket=change, ticket_event=event, arm_revert=action.revert is not None)
        done = self.store.proposal(proposal.id)
        assert done is not None
        report.add(done, request=request.line, outcome=outcome.status)
        return None

    def _refused(self, proposal: Proposal) -> bool:
        """Did the start's last check refuse it itself? (Else another process moved it first, a
        reject or the kill switch or another loop, and its ticket is that process's business.)"""
        current = self.store.proposal(proposal.id)
        return current is not None and current.status == "refused"


def _firing(ticket: Ticket, states: Mapping[tuple[str, str], EntityState]) -> bool:
    state = states.get((ticket.invariant, ticket.entity_key))
    return ticket.is_open and state is not None and state.status == "firing"


def diagnosis_event(diagnosis: Diagnosis, *, cached: bool) -> dict[str, Any]:
    return {
        "provider": diagnosis.provider,
        "model": diagnosis.model,
        "cached": cached,
        "summary": diagnosis.summary,
        "root_cause": diagnosis.root_cause,
        "confidence": diagnosis.confidence,
        "evidence": list(diagnosis.evidence),
        "alternatives_considered": [a.model_dump() for a in diagnosis.alternatives_considered],
        "recommended_actions": [r.model_dump() for r in diagnosis.recommended_actions],
        "input_tokens": diagnosis.input_tokens,
        "output_tokens": diagnosis.output_tokens,
        "tool_calls": diagnosis.tool_calls,
        "fallback_reason": diagnosis.fallback_reason,
        "unevaluated": [u.model_dump() for u in diagnosis.unevaluated],
    }
