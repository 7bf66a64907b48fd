"""Whether an action did what it is for: its `verify.expr` over each tick's observations while
its ticket verifies. The first tick it holds writes `effect_confirmed` on the ticket; only then
does the ticket's recovery credit the action (`verified`, see Store._credit), else the ticket
says the invariant held again and the action's effect was not confirmed (`recovered`).

It runs before the tick is stored, on what that tick observed (all of it taken after the action
ran), so a ticket that resolves in the same tick is judged on the same observations.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.config.models import Config
from engine.errors import ExpressionError
from engine.expr import compile_expr, to_python
from engine.store import Store

CONFIRMED = "effect_confirmed"


class EffectCheck:
    def __init__(self, config: Config, store: Store) -> None:
        self.config = config
        self.store = store

    def confirm(self, observed: Mapping[str, Any], now: float) -> list[int]:
        """Check the actions of verifying tickets against `observed` (the tick's successful
        observations); returns the ids of the proposals whose effect is confirmed now."""
        confirmed = []
        for ticket in self.store.verifying_tickets():
            proposal = None if ticket.verify_proposal_id is None else self.store.proposal(ticket.verify_proposal_id)
            action = None if proposal is None else self.config.action(proposal.action)
            if proposal is None or action is None or action.verify.expr is None:
                continue
            if any(e.kind == CONFIRMED and e.data.get("proposal") == proposal.id for e in self.store.events(ticket.id)):
                continue
            compiled = compile_expr(action.verify.expr)
            needed = compiled.names & set(self.config.observations)
            if not needed <= set(observed):
                continue  # an observation it reads failed this tick: nothing to tell yet
            env = {name: observed[name] for name in needed} | {"params": proposal.params, "now": now, "vars": self.config.variable_values()}
            try:
                holds = to_python(compiled.evaluate(env)) is True
            except ExpressionError:
                continue  # not decidable on these observations; a later tick may tell
            if holds:
                self.store.add_event(CONFIRMED, ticket_id=ticket.id, actor="engine", at=now,
                                     data={"proposal": proposal.id, "action": action.name, "expr": action.verify.expr})
                confirmed.append(proposal.id)
        return confirmed
