"""`opctl test --property`: generated observations, the real evaluator, a minimal counterexample.

For a property `{invariant: X, fires_iff: C}`, hypothesis generates every observation that X
(or C, or `assume`) reads from its shape, holds those values steady for long enough that `for`
elapses (ticks at 0 and at `for`), and checks that X is firing exactly when C is true. An
evaluation error on shape-valid data is a failure too: the invariant would go blind on it.
The first violation is shrunk to a minimal one, which the failure prints.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, Phase, find, settings
from hypothesis import strategies as st
from hypothesis.errors import NoSuchExample

from engine.config.models import Config, Invariant
from engine.config.reads import names_read
from engine.errors import ExpressionEvalError
from engine.evaluate import EntityState, Evaluator
from engine.expr import CompiledExpr, compile_expr, to_python
from engine.observe import ObservationResult
from engine.testing.load import LoadedTest
from engine.testing.model import Property
from engine.testing.scenario import CaseResult
from engine.testing.shapes import strategy_for


@dataclass(frozen=True)
class Verdict:
    """How one generated example went; `problem` is None when the property holds for it."""

    problem: str | None
    entities: dict[str, str]


class PropertyCheck:
    """One property against one invariant; `verdict(values)` is pure and deterministic."""

    def __init__(self, config: Config, prop: Property, shapes: Mapping[str, dict[str, Any]]) -> None:
        invariant = config.invariant(prop.invariant)
        assert invariant is not None  # the loader checked the name
        self.invariant: Invariant = invariant
        self.prop = prop
        self.variables = config.variable_values()
        self.fires_iff: CompiledExpr = compile_expr(prop.fires_iff)
        self.assume: CompiledExpr | None = compile_expr(prop.assume) if prop.assume else None
        self.evaluator = Evaluator(config.model_copy(update={"invariants": [invariant]}))
        read = set(self.fires_iff.names) | (self.assume.names if self.assume else set()) | names_read(invariant)
        self.names = sorted(read & set(config.observations))
        self.strategy = st.fixed_dictionaries({name: strategy_for(shapes[name], f"shape of {name}") for name in self.names})

    def verdict(self, values: Mapping[str, Any]) -> Verdict:
        inv = self.invariant
        times = [0.0] if inv.hold <= 0 else [0.0, inv.hold]
        env = {**values, "now": times[-1], "vars": self.variables}
        if self.assume is not None and _truth(self.assume, env) is not True:
            return Verdict(None, {})
        results = {name: ObservationResult(name, True, value, None, 0.0, "generated") for name, value in values.items()}
        states: Mapping[tuple[str, str], EntityState] = {}
        previous: dict[str, Any] = {}
        for now in times:
            evaluation = self.evaluator.evaluate(results, previous, states, now)
            states = evaluation.states
            previous = dict(values)
            report = evaluation.reports[inv.name]
            if report.health == "err":
                return Verdict(f"the invariant could not be evaluated: {report.error}", {})
        entities = {key: state.status for (name, key), state in states.items() if name == inv.name}
        fires = any(status == "firing" for status in entities.values())
        expected = _truth(self.fires_iff, env)
        if not isinstance(expected, bool):
            return Verdict(f"fires_iff gave {expected!r}, not true or false", entities)
        if fires != expected:
            said = "true" if expected else "false"
            did = "fires" if fires else "does not fire"
            return Verdict(f"{inv.name} {did}, but fires_iff is {said}", entities)
        return Verdict(None, entities)


def _truth(expr: CompiledExpr, env: Mapping[str, Any]) -> Any:
    try:
        return to_python(expr.evaluate(env))
    except ExpressionEvalError as exc:
        return f"<error: {exc}>"


def run_property(test: LoadedTest, prop: Property) -> CaseResult:
    started = time.perf_counter()
    check = PropertyCheck(test.loaded.config, prop, test.shapes)
    options = settings(
        max_examples=prop.examples,
        database=None,
        derandomize=True,  # the same examples on every run: CI results do not flicker
        deadline=None,
        phases=(Phase.generate, Phase.shrink),  # no explain phase: it costs seconds and find() does not show it
        suppress_health_check=list(HealthCheck),
    )
    try:
        minimal = find(check.strategy, lambda values: check.verdict(values).problem is not None, settings=options)
    except NoSuchExample:
        return CaseResult(str(test.file), prop.name, "property", None, (), time.perf_counter() - started)
    verdict = check.verdict(minimal)
    text = json.dumps(minimal, indent=2, sort_keys=True, ensure_ascii=False)
    lines = [
        f"property '{prop.name}': {verdict.problem}",
        f"    fires_iff: {prop.fires_iff}",
        f"    invariant expr: {check.invariant.expr}",
        "    minimal counterexample (observations):",
        *(f"      {line}" for line in text.splitlines()),
    ]
    if verdict.entities:
        states = ", ".join(f"{key!r}={status}" if check.invariant.for_each else f"(cluster)={status}" for key, status in sorted(verdict.entities.items()))
        lines.append(f"    entity states: {states}")
    return CaseResult(str(test.file), prop.name, "property", None, ("\n".join(lines),), time.perf_counter() - started)
