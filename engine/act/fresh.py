"""A CEL condition of the acting stage over FRESH observations: the ones it names are re-run now.

    verdict = await on_fresh(config, observe, "string(params.id) in evicted", params=p, now=t)
    verdict.holds    # True only for a CEL `true`; verdict.failure says why it could not be decided

The action gate's guard (`when`) and the effect check (`verify.expr`) both decide this way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from engine.config.models import Config
from engine.errors import ExpressionError
from engine.expr import compile_expr, to_python
from engine.observe import ObservationResult

Observe = Callable[[str], Awaitable[ObservationResult]]


@dataclass(frozen=True)
class Verdict:
    value: Any = None  # what the condition evaluated to
    failure: str | None = None  # an observation failed, or the expression could not be evaluated

    @property
    def holds(self) -> bool:
        return self.failure is None and self.value is True


async def on_fresh(
    config: Config, observe: Observe, source: str, *, params: Mapping[str, Any], now: float, prev: Mapping[str, Any] | None = None
) -> Verdict:
    compiled = compile_expr(source)
    names = [n for n in config.observations if n in compiled.names]
    results = await asyncio.gather(*(observe(n) for n in names))
    failed = [r for r in results if not r.ok]
    if failed:
        return Verdict(failure="; ".join(f"observation {r.name} failed when re-run: {r.error}" for r in failed))
    env: dict[str, Any] = {r.name: r.value for r in results}
    env.update(params=dict(params), now=now, prev=dict(prev or {}), vars=config.variable_values())
    try:
        return Verdict(to_python(compiled.evaluate(env)))
    except ExpressionError as exc:
        return Verdict(failure=f"({source}) could not be evaluated: {exc}")
