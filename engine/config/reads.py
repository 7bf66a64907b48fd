"""What an invariant reads: the names its expressions use, and the targets of the observations
among them.

`target_up` of a target mutes an invariant only when the invariant reads that target (a dead
metrics server is no cause of a violation seen through another API), so muting and the
inhibition-cycle check both need this; an expression that does not compile reads nothing
(validate reports it)."""

from __future__ import annotations

from collections.abc import Mapping

from engine.config.models import Invariant, Observation
from engine.errors import ExpressionCompileError
from engine.expr import compile_expr


def names_read(invariant: Invariant) -> frozenset[str]:
    """Every name its expressions read (`expr`, `for_each`, `key`, `resolve_when`)."""
    names: set[str] = set()
    for source in (invariant.expr, invariant.for_each, invariant.key, invariant.resolve_when):
        if source is not None:
            try:
                names |= compile_expr(source).names
            except ExpressionCompileError:
                continue
    return frozenset(names)


def targets_read(invariant: Invariant, observations: Mapping[str, Observation]) -> frozenset[str]:
    return frozenset(observations[n].query.target for n in names_read(invariant) if n in observations)
