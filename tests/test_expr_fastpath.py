"""Differential property tests: the Python fast path and the `cel` library agree on everything.

Random expressions from the fast-path grammar are evaluated against random JSON-like
environments by both evaluators; they must return the same value (same type, too) or both raise.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.errors import ExpressionEvalError
from engine import _expr_fast
from engine.expr import compile_expr

KEYS = ["a", "b", "s", "n", "l"]

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, 1, -1, 2, 3, 7, -7, 2**53 + 1, 2**63 - 1, -(2**63)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 0.5, 1.0, 2.0, 1e20, 1e-7]),
    st.text(alphabet="ab-éx\n", max_size=4),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=3),
    max_leaves=6,
)
envs = st.fixed_dictionaries(
    {"item": st.dictionaries(st.sampled_from(KEYS), json_values, max_size=5), "x": json_values, "y": json_values}
)

int_lits = st.sampled_from(["0", "1", "2", "-1", "7", "-7", "9223372036854775807", "-9223372036854775808", "0x10"])
float_lits = st.sampled_from(["0.0", "0.5", "1.0", "2.5", "1e3", ".5"])
str_lits = st.sampled_from(['"a"', "'b'", '""', '"node-"', '"é"', '"a\\nb"'])
leaves = st.one_of(
    int_lits, float_lits, str_lits, st.sampled_from(["true", "false", "null"]),
    st.sampled_from(["x", "y", "item"]),
    st.sampled_from(KEYS).map(lambda k: f"item.{k}"),
)


def _compose(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    binops = ["==", "!=", "<", "<=", ">", ">=", "+", "-", "*", "/", "%", "&&", "||", "in"]
    return st.one_of(
        st.tuples(inner, st.sampled_from(binops), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(st.sampled_from(["-", "!"]), inner).map(lambda t: f"{t[0]}({t[1]})"),
        st.tuples(inner, inner, inner).map(lambda t: f"({t[0]} ? {t[1]} : {t[2]})"),
        st.lists(inner, max_size=3).map(lambda items: "[" + ", ".join(items) + "]"),
        st.lists(st.tuples(st.sampled_from(KEYS), inner), max_size=2).map(
            lambda kv: "{" + ", ".join(f'"{k}": {v}' for k, v in kv) + "}"),
        st.tuples(inner, st.sampled_from(KEYS)).map(lambda t: f"({t[0]}).{t[1]}"),
        st.tuples(inner, st.sampled_from(KEYS)).map(lambda t: f"has(({t[0]}).{t[1]})"),
        st.tuples(inner, inner).map(lambda t: f"({t[0]})[{t[1]}]"),
        inner.map(lambda e: f"size({e})"),
        inner.map(lambda e: f"({e}).size()"),
        st.tuples(inner, st.sampled_from(["startsWith", "endsWith", "contains"]), inner).map(
            lambda t: f"({t[0]}).{t[1]}({t[2]})"),
        st.tuples(inner, st.sampled_from(['"^a"', '"b$"', '"[a-]+"', '"\\\\d"', '"x|é"'])).map(
            lambda t: f"({t[0]}).matches({t[1]})"),
        st.tuples(st.sampled_from(["int", "double", "string"]), inner).map(lambda t: f"{t[0]}({t[1]})"),
        st.tuples(inner, st.sampled_from(["exists", "all", "exists_one", "filter", "map"]), inner).map(
            lambda t: f"({t[0]}).{t[1]}(v, {t[2].replace('y', 'v')})"),
        st.tuples(inner, inner, inner).map(lambda t: f"({t[0]}).map(v, {t[1].replace('y', 'v')}, {t[2].replace('x', 'v')})"),
    )


expressions = st.recursive(leaves, _compose, max_leaves=8)


def same(a: Any, b: Any) -> bool:
    """Equal values of equal types (1, 1.0 and True are all different); NaN equals NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


def outcome(fn: Any, env: dict[str, Any]) -> tuple[str, Any]:
    try:
        return "value", fn(env)
    except ExpressionEvalError:
        return "error", None


# Typed grammar: mostly well-typed expressions over a typed `item`, so most evaluations produce
# values (the untyped grammar above mostly exercises error paths).
typed_item = st.fixed_dictionaries(
    {},
    optional={
        "a": st.integers(min_value=-5, max_value=5) | st.integers(min_value=-(2**63), max_value=2**63 - 1),
        "b": st.integers(min_value=-3, max_value=3),
        "s": st.text(alphabet="ab-é1", max_size=4),
        "n": st.floats(allow_nan=False, width=32) | st.sampled_from([0.0, 0.5, -2.5, math.inf]),
        "l": st.lists(st.integers(min_value=-3, max_value=3), max_size=4),
    },
)
typed_envs = st.fixed_dictionaries({"item": typed_item, "x": json_values})


INT_LEAVES = st.sampled_from(["0", "1", "2", "-3", "7", "-7", "item.a", "item.b", "size(item.s)",
                              "item.l.size()", "int(item.n)", "int(item.s)", "item.l[0]"])
FLOAT_LEAVES = st.sampled_from(["0.0", "0.5", "2.5", "-1.5", "item.n", "double(item.a)", "double(item.s)"])
STR_LEAVES = st.sampled_from(['"a"', '"node-"', '""', "item.s", "string(item.a)", "string(item.n)"])
BOOL_LEAVES = st.sampled_from(["true", "false", "has(item.a)", "has(item.s)", "x == null"])


def _typed(depth: int) -> dict[str, st.SearchStrategy[str]]:
    """Strategies per result type, nested at most `depth` levels (deep trees almost always fail)."""
    g: dict[str, st.SearchStrategy[str]] = {}
    if depth == 0:
        return {"int": INT_LEAVES, "float": FLOAT_LEAVES, "str": STR_LEAVES, "bool": BOOL_LEAVES}
    sub = _typed(depth - 1)
    i, f, s, b = sub["int"], sub["float"], sub["str"], sub["bool"]
    g["int"] = st.one_of(
        INT_LEAVES,
        st.tuples(i, st.sampled_from(["+", "-", "*", "/", "%"]), i).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        i.map(lambda e: f"-({e})"),
        st.tuples(b, i, i).map(lambda t: f"({t[0]} ? {t[1]} : {t[2]})"),
    )
    g["float"] = st.one_of(
        FLOAT_LEAVES,
        st.tuples(f, st.sampled_from(["+", "-", "*", "/"]), f).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        f.map(lambda e: f"-({e})"),
    )
    g["str"] = st.one_of(
        STR_LEAVES,
        st.tuples(s, s).map(lambda t: f"({t[0]} + {t[1]})"),
        st.tuples(b, s, s).map(lambda t: f"({t[0]} ? {t[1]} : {t[2]})"),
    )
    cmp = st.sampled_from(["==", "!=", "<", "<=", ">", ">="])
    g["bool"] = st.one_of(
        BOOL_LEAVES,
        st.tuples(i, cmp, i).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(f, cmp, f).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(i, cmp, f).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(s, cmp, s).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(s, st.sampled_from(["startsWith", "endsWith", "contains"]), s).map(
            lambda t: f"{t[0]}.{t[1]}({t[2]})"),
        s.map(lambda e: f'{e}.matches("^[a-]+1?$")'),
        st.tuples(b, st.sampled_from(["&&", "||"]), b).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        b.map(lambda e: f"!({e})"),
        st.tuples(i, i, i).map(lambda t: f"({t[0]} in [{t[1]}, {t[2]}])"),
        s.map(lambda e: f'({e} in ["a", "node-", "b"])'),
        st.tuples(st.sampled_from(["exists", "all", "exists_one"]), i).map(lambda t: f"item.l.{t[0]}(v, v * 2 > {t[1]})"),
        st.tuples(st.sampled_from(["exists", "all"]), i).map(lambda t: f"item.l.{t[0]}(v, 6 / v > {t[1]})"),
        st.tuples(i, i).map(lambda t: f"(item.l.filter(v, v > {t[0]}).size() == {t[1]})"),
        i.map(lambda e: f"(item.l.map(v, v * {e}) == item.l.map(v, {e} * v))"),
        st.tuples(i, leaves).map(lambda t: f"({t[0]} == {t[1]})"),
    )
    return g


typed_expressions = st.one_of(*_typed(3).values())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=typed_expressions, env=typed_envs)
def test_fast_path_agrees_with_library_on_typed_expressions(source: str, env: dict[str, Any]) -> None:
    test_fast_path_agrees_with_library.hypothesis.inner_test(source=source, env=env)  # type: ignore[attr-defined]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=expressions, env=envs)
def test_fast_path_agrees_with_library(source: str, env: dict[str, Any]) -> None:
    compiled = compile_expr(source)
    assert compiled.fast or ".matches(" in source, f"{source} should run on the fast path"
    fast = outcome(compiled.evaluate, env)
    library = outcome(compiled.evaluate_with_library, env)
    assert fast[0] == library[0], f"{source} with {env}: fast {fast}, library {library}"
    assert same(fast[1], library[1]), f"{source} with {env}: fast {fast}, library {library}"


def test_generator_covers_the_fast_path() -> None:
    # guard against the property test silently exercising only the library
    for source in ["(item.a + 1)", "[x].exists(v, (v == 1))", "has((item).s)", "(x).matches(\"^a\")",
                   "[x].filter(v, v)", "[x].map(v, v, v)", "[x].exists_one(v, v)"]:
        assert compile_expr(source).fast, source


# --------------------------------------------------------------------------- batch evaluation
# `evaluate_each(env, items)` must give, item by item, exactly what `evaluate` gives with the
# item bound to `item`: the same value, or an ExpressionEvalError with the same message.

item_values = st.one_of(st.dictionaries(st.sampled_from(KEYS), json_values, max_size=5), json_values)


def one_by_one(compiled: Any, env: dict[str, Any], items: list[Any]) -> list[tuple[str, Any]]:
    out = []
    for item in items:
        try:
            out.append(("value", compiled.evaluate({**env, "item": item})))
        except ExpressionEvalError as exc:
            out.append(("error", str(exc)))
    return out


def batched(compiled: Any, env: dict[str, Any], items: list[Any]) -> list[tuple[str, Any]]:
    values = compiled.evaluate_each(env, items)
    assert len(values) == len(items)
    return [("error", str(v)) if isinstance(v, ExpressionEvalError) else ("value", v) for v in values]


def assert_batch_agrees(source: str, env: dict[str, Any], items: list[Any]) -> None:
    compiled = compile_expr(source)
    expected = one_by_one(compiled, env, items)
    got = batched(compiled, env, items)
    for index, (want, have) in enumerate(zip(expected, got)):
        assert want[0] == have[0] and (same(want[1], have[1]) if want[0] == "value" else want[1] == have[1]), (
            f"{source} item {index} of {items} with {env}: one by one {want}, batch {have}")
        # and the reference: the library alone
        library = outcome(compiled.evaluate_with_library, {**env, "item": items[index]})
        assert library[0] == have[0] and (have[0] == "error" or same(library[1], have[1])), (
            f"{source} item {index} of {items} with {env}: library {library}, batch {have}")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=expressions, env=envs, items=st.lists(item_values, max_size=4), drop=st.sampled_from([None, "x", "y"]))
def test_batch_agrees_with_one_by_one(source: str, env: dict[str, Any], items: list[Any], drop: str | None) -> None:
    env = {k: v for k, v in env.items() if k not in ("item", drop)}  # a missing variable, sometimes
    assert_batch_agrees(source, env, items)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=typed_expressions, items=st.lists(typed_item, max_size=4), x=json_values,
       stats=st.fixed_dictionaries({"f": st.floats(width=32) | st.sampled_from([0.5, math.nan, -math.inf]),
                                    "i": st.integers(min_value=-(2**63), max_value=2**63 - 1)}))
def test_batch_agrees_with_one_by_one_on_typed_expressions(
        source: str, items: list[Any], x: Any, stats: dict[str, Any]) -> None:
    assert_batch_agrees(source, {"x": x, "stats": stats}, items)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(left=INT_LEAVES | FLOAT_LEAVES, op=st.sampled_from(["<", "<=", ">", ">=", "==", "!="]),
       invariant=st.sampled_from(["stats.f", "stats.i", "2.0 * stats.f", "stats.i + 1", "-stats.f",
                                  "x", "double(stats.i) / stats.f", "size(stats)", "stats.nope"]),
       items=st.lists(typed_item, max_size=4), x=json_values,
       stats=st.fixed_dictionaries({"f": st.floats() | st.sampled_from([0.5, math.nan, math.inf]),
                                    "i": st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.sampled_from(
                                        [0, 2**53, 2**53 + 1, -(2**53) - 1])}))
def test_batch_agrees_on_item_independent_parts(
        left: str, op: str, invariant: str, items: list[Any], x: Any, stats: dict[str, Any]) -> None:
    # the shape of the engine's invariants: an item's field against a value computed once
    for source in (f"{left} {op} {invariant}", f"{invariant} {op} {left}", f"has(item.a) || {left} {op} {invariant}"):
        assert_batch_agrees(source, {"x": x, "stats": stats}, items)


def test_batch_generator_covers_the_generated_loop() -> None:
    # guard against the batch property tests silently exercising only the one-by-one fallback
    env = {"x": 1, "y": 2.0, "stats": {"f": 1.5, "i": 3}}
    for source in ["(item.a + 1)", "item.a <= 2.0 * stats.f", "[x].exists(v, (v == 1))", "has((item).s)"]:
        tree = _expr_fast.parse(source)
        each, _ = _expr_fast.build_each(tree, source, "item")
        assert each(env, [{"a": 1, "s": "t"}]) is not None, source
