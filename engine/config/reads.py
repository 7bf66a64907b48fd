"""Which targets an invariant reads: the targets of the observations its expressions name.

`target_up` of a target mutes an invariant only when the invariant reads that target (a dead
metrics server is no cause of a violation seen through another API), so muting and the
inhibition-cycle check both need this; an expression that does not compile reads nothing
(validate reports it)."""

from __future__ import annotations

from collections.abc import Mapping

from engine.config.models import Invariant, Observation
from engine.errors import ExpressionCompileError
from engine.expr import compile_expr


def targets_read(invariant: Invariant, observations: Mapping[str, Observation]) -> frozenset[str]:
    names: set[str] = set()
    for source in (invariant.expr, invariant.for_each, invariant.key, invariant.resolve_when):
        if source is not None:
            try:
                names |= compile_expr(source).names
            except ExpressionCompileError:
                continue
    return frozenset(observations[n].query.target for n in names if n in observations)
