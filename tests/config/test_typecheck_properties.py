"""Properties of the expression checker, over random shapes and random expressions.

* A well-typed expression over a random shape: the checker reports nothing, and evaluating it on
  any value drawn from the shape (engine.testing.shapes) never fails.
* The same expression with one atom mutated (a field renamed, a literal of another type): the
  checker reports an error inside the mutated atom.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.config.celtypes import from_schema
from engine.config.typecheck import Scope, check
from engine.expr import compile_expr
from engine.testing.shapes import strategy_for

NAMES = ["a", "b", "c", "d", "e"]
BOUND = 1000  # integers stay small: well-typed arithmetic must not overflow


@dataclass(frozen=True)
class Atom:
    """A bool expression over one field, and how to break it."""

    text: str
    renamed: str  # the field renamed to one the shape does not declare
    retyped: str | None  # a literal replaced by one of a type the field never has


def _field_schemas(depth: int) -> st.SearchStrategy[dict[str, Any]]:
    leaves = st.sampled_from([
        {"type": "integer", "minimum": -BOUND, "maximum": BOUND},
        {"type": "number", "minimum": -BOUND, "maximum": BOUND},
        {"type": "string", "maxLength": 4},
        {"type": "boolean"},
        {"enum": ["up", "down", "stale"]},
        {"type": "array", "items": {"type": "integer", "minimum": -BOUND, "maximum": BOUND}, "maxItems": 3},
    ])
    if depth == 0:
        return leaves
    return st.one_of(leaves, _objects(depth - 1))


def _objects(depth: int) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(NAMES), _field_schemas(depth), min_size=1, max_size=4).map(
        lambda props: {"type": "object", "required": sorted(props), "properties": props})


def _atoms(schema: dict[str, Any], path: str) -> list[st.SearchStrategy[Atom]]:
    """Strategies of atoms over every leaf field under `path` (schema is that object's)."""
    out: list[st.SearchStrategy[Atom]] = []
    for name, sub in schema["properties"].items():
        here = f"{path}.{name}"
        bad = f"{path}.{name}_x"
        kind = sub.get("type", "enum")
        if kind == "object":
            out += _atoms(sub, here)
        elif kind == "integer":
            out.append(st.sampled_from(["<", "<=", ">", ">=", "==", "!="]).flatmap(lambda op, h=here, b=bad: st.integers(-5, 5).map(
                lambda n: Atom(f"{h} {op} {n}", f"{b} {op} {n}", f'{h} {op} "{n}"'))))
            out.append(st.just(Atom(f"{here} * 2 == {here} + {here}", f"{bad} * 2 == {here} + {here}", f"{here} * 2 == {here} + 1.5")))
        elif kind == "number":
            out.append(st.sampled_from(["<", ">="]).map(lambda op, h=here, b=bad: Atom(f"{h} {op} 0.5", f"{b} {op} 0.5", f'{h} {op} "0.5"')))
        elif kind == "string":
            out.append(st.just(Atom(f'{here}.startsWith("a") || size({here}) >= 0', f'{bad}.startsWith("a") || size({here}) >= 0',
                                    f"{here}.startsWith(1) || size({here}) >= 0")))
            out.append(st.just(Atom(f'{here} + "s" != ""', f'{bad} + "s" != ""', f"{here} + 1 != \"\"")))
        elif kind == "boolean":
            out.append(st.just(Atom(f"!{here} || {here} == true", f"!{bad} || {here} == true", f"!{here} || {here} == 1")))
        elif kind == "array":
            out.append(st.just(Atom(f"{here}.all(x, x >= -{BOUND}) && size({here}) <= 3",
                                    f"{bad}.all(x, x >= -{BOUND}) && size({here}) <= 3",
                                    f'{here}.all(x, x >= "0") && size({here}) <= 3')))
        else:  # enum
            out.append(st.sampled_from(sub["enum"]).map(lambda v, h=here, b=bad: Atom(
                f'{h} == "{v}" || {h} in ["up", "down"]', f'{b} == "{v}" || {h} in ["up", "down"]', f'{h} == "sideways"')))
    return out


@dataclass(frozen=True)
class Case:
    schema: dict[str, Any]
    atoms: tuple[Atom, ...]
    ops: tuple[str, ...]

    def source(self, replaced: int | None = None, text: str | None = None) -> tuple[str, int, int]:
        """The expression, with atom `replaced` as `text`; and where that atom is (start, end)."""
        parts, span, pos = [], (0, 0), 0
        for i, atom in enumerate(self.atoms):
            if i:
                parts.append(f" {self.ops[i - 1]} ")
                pos += len(parts[-1])
            piece = f"({text if i == replaced and text is not None else atom.text})"
            if i == replaced:
                span = (pos, pos + len(piece))
            parts.append(piece)
            pos += len(piece)
        return "".join(parts), span[0], span[1]


@st.composite
def cases(draw: st.DrawFn) -> Case:
    schema = draw(_objects(2))
    atoms = tuple(draw(st.lists(st.one_of(_atoms(schema, "item")), min_size=1, max_size=4)))
    ops = tuple(draw(st.lists(st.sampled_from(["&&", "||"]), min_size=len(atoms) - 1, max_size=len(atoms) - 1)))
    return Case(schema, atoms, ops)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=cases(), data=st.data())
def test_well_typed_expressions_check_clean_and_evaluate_without_error(case: Case, data: st.DataObject) -> None:
    source, _, _ = case.source()
    checked = check(source, Scope({"item": from_schema(case.schema)}))
    assert checked is not None and checked.problems == [], (source, checked)
    assert checked.type == from_schema({"type": "boolean"})
    compiled = compile_expr(source)
    for _ in range(3):
        item = data.draw(strategy_for(case.schema))
        value = compiled.evaluate({"item": item})  # raises ExpressionEvalError on any failure
        assert value is True or value is False
        assert compiled.evaluate_with_library({"item": item}) is value


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=cases(), which=st.integers(min_value=0), rename=st.booleans())
def test_a_mutated_atom_is_reported_where_it_is(case: Case, which: int, rename: bool) -> None:
    index = which % len(case.atoms)
    atom = case.atoms[index]
    mutated = atom.renamed if rename or atom.retyped is None else atom.retyped
    source, start, end = case.source(index, mutated)
    checked = check(source, Scope({"item": from_schema(case.schema)}))
    assert checked is not None
    assert any(start <= p.start < end for p in checked.problems), (source, mutated, checked.problems)
