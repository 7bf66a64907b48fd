"""CEL semantics the engine relies on, pinned against BOTH evaluators (fast path and library).

Each case is (expression, env, expected) where expected is a value or ERROR. Values compare
with their type (1, 1.0 and True differ). Comments mark where the library (cel-expr-python) departs from
the CEL spec (tests/test_cel_spec.py runs the official suite); the library is the reference.
"""

from __future__ import annotations

import json

import math
from typing import Any

import pytest

from engine.errors import ExpressionCompileError, ExpressionEvalError
from engine.expr import compile_expr, to_python

ERROR = object()
ITEM = {"state": "up", "available": 30, "capacity": 100, "ratio": 0.3, "name": "node-1",
        "tags": ["a", "b"], "meta": {"zone": "z1"}, "none": None, "x": [1]}

CASES: list[tuple[str, dict[str, Any], Any]] = [
    # field access, has(), missing keys and variables
    ('item.state == "up"', {"item": ITEM}, True),
    ("item.meta.zone", {"item": ITEM}, "z1"),
    ('item["meta"]["zone"]', {"item": ITEM}, "z1"),
    ("item.tags[1]", {"item": ITEM}, "b"),
    ("item.tags[2]", {"item": ITEM}, ERROR),
    ("item.tags[-1]", {"item": ITEM}, ERROR),  # no negative indexing
    ("item.missing", {"item": ITEM}, ERROR),
    ("item.state.x", {"item": ITEM}, ERROR),
    ("item.none.x", {"item": ITEM}, ERROR),
    ("nobody == 1", {"item": ITEM}, ERROR),
    ("has(item.state)", {"item": ITEM}, True),
    ("has(item.nope)", {"item": ITEM}, False),
    ("has(item.none)", {"item": ITEM}, True),  # present with null value
    ("has(item.nope.deeper)", {"item": ITEM}, ERROR),
    ("has(item.x) && item.x.size() > 0", {"item": ITEM}, True),
    ("has(item.nope) && item.nope.size() > 0", {"item": ITEM}, False),
    # int / double mixing
    ("1 < 1.5", {}, True),
    ("1 == 1.0", {}, True),
    ("2 >= 2.0", {}, True),
    ("3 / 2", {}, 1),
    ("-3 / 2", {}, -1),  # truncates toward zero
    ("-7 % 3", {}, -1),
    ("3.0 / 2", {}, ERROR),  # library: no int/double arithmetic mixing
    ("1 + 1.0", {}, ERROR),
    ("3.0 / 2.0", {}, 1.5),
    ("7.5 % 2.0", {}, ERROR),  # library: no double modulo
    ("item.available / item.capacity >= 0.2", {"item": ITEM}, False),  # int division: 30/100 == 0
    ("double(item.available) / double(item.capacity) >= 0.2", {"item": ITEM}, True),
    ("9007199254740993 == 9007199254740992.0", {}, True),  # int vs double compares as doubles (lossy)
    # division by zero and overflow
    ("1 / 0", {}, ERROR),
    ("1 % 0", {}, ERROR),
    ("1.0 / 0.0", {}, math.inf),
    ("-1.0 / 0.0", {}, -math.inf),
    ("9223372036854775807 + 1", {}, ERROR),
    ("-9223372036854775808 - 1", {}, ERROR),
    ("-9223372036854775808 / -1", {}, ERROR),
    ("-9223372036854775808 % -1", {}, ERROR),  # library quirk: overflow, not 0
    ("-(-9223372036854775808)", {}, ERROR),  # overflow
    # booleans, null, strings
    ("true == 1", {}, False),  # bool is not a number
    ("-true", {}, ERROR),  # no unary minus on bool
    ("!1", {}, ERROR),
    ("null == null", {}, True),
    ("item.none == null", {"item": ITEM}, True),
    ("null < 1", {}, ERROR),
    ('"a" < "b"', {}, True),
    ('"a" + "b"', {}, "ab"),
    ('1 < "a"', {}, ERROR),
    ('1 == "a"', {}, False),
    ("x < 1.0", {"x": math.nan}, False),  # NaN orders false
    # && and || absorb errors on either side
    ("false && (1/0 == 1)", {}, False),
    ("(1/0 == 1) && false", {}, False),
    ("(1/0 == 1) || true", {}, True),
    ("true && (1/0 == 1)", {}, ERROR),
    ("item.missing == 1 || item.state == \"up\"", {"item": ITEM}, True),
    ("1 && false", {}, False),
    ("1 && true", {}, ERROR),
    ("true ? 1 : 1/0", {}, 1),
    ("1 ? 1 : 2", {}, ERROR),
    # in, size
    ('"a" in ["a", "b"]', {}, True),
    ('item.name in ["a", "b"]', {"item": ITEM}, False),
    ("1 in [1.0]", {}, True),
    ("true in [1]", {}, False),
    ('"zone" in item.meta', {"item": ITEM}, True),
    ('1 in {"a": 1}', {}, False),
    ('1.5 in {"a": 1}', {}, False),
    ('"a" in "abc"', {}, ERROR),
    ("size(item.tags)", {"item": ITEM}, 2),
    ("item.meta.size()", {"item": ITEM}, 1),
    ('size("héllo")', {}, 5),  # code points
    ("size(1)", {}, ERROR),
    # string functions
    ('item.name.startsWith("node-")', {"item": ITEM}, True),
    ('item.name.endsWith("-1")', {"item": ITEM}, True),
    ('item.name.contains("de")', {"item": ITEM}, True),
    ('item.name.matches("^node-\\\\d+$")', {"item": ITEM}, True),
    ('"abc".matches("b")', {}, True),  # unanchored search
    ("item.available.startsWith(\"3\")", {"item": ITEM}, ERROR),
    # conversions
    ("int(1.9)", {}, 1),
    ("int(-1.9)", {}, -1),
    ('int("+12")', {}, 12),
    ('int(" 12")', {}, 12),  # library: leading blanks are skipped
    ("int(9223372036854775807.0)", {}, ERROR),
    ("int(true)", {}, 1),  # library: the spec has no int(bool); cel-cpp converts
    ("double(1)", {}, 1.0),
    ('double("1e3")', {}, 1000.0),
    ("string(1.0)", {}, "1"),  # doubles print in their shortest form, with an exponent when long
    ("string(1e20)", {}, "1e+20"),
    ("string(0.0000001)", {}, "1e-07"),
    ("string(true)", {}, "true"),
    # lists, maps, equality
    ("[1, 2] == [1.0, 2.0]", {}, True),
    ('{"a": 1} == {"a": 1.0}', {}, True),
    ("[1] + [2]", {}, [1, 2]),
    ('{"a": 1, "a": 2}', {}, ERROR),  # duplicate keys
    ('item.meta == {"zone": "z1"}', {"item": ITEM}, True),
    # exists / all stop at the first decisive element; an error before it is an error
    ("nodes.exists(n, n.id == params.node_id)", {"nodes": [{"id": "a"}, {"id": "b"}], "params": {"node_id": "b"}}, True),
    ("nodes.all(n, n.up)", {"nodes": [{"up": True}, {"up": False}]}, False),
    ("[0, 1].exists(v, 1 / v == 1)", {}, True),  # an error on one element is absorbed when another decides
    ("[0, 2].exists(v, 1 / v == 1)", {}, ERROR),  # ... and is the result when none decides
    ("[0, 1].all(v, 1 / v == 0)", {}, False),
    ("[1, 0].exists(v, 1 / v == 1)", {}, True),
    ("[1, 0].all(v, 1 / v > 5)", {}, False),
    ("[1, 2].exists(v, v)", {}, ERROR),
    ("[].all(v, v)", {}, True),
    ('{"a": 1}.exists(k, k == "a")', {}, True),
    ("[1].exists(x, x == 1)", {"x": 5}, True),  # the bound variable shadows the context
    ("item.state.exists(c, true)", {"item": ITEM}, ERROR),
    # ordering: an int beyond uint64 cannot be bound; one beyond int64 is a uint in the library
    ("x > y", {"x": 2**64 + 1, "y": 2**64}, ERROR),
    ("x > y", {"x": 2**63 + 1, "y": 2**63}, True),
    ("x < 2.0 * y", {"x": 3, "y": math.nan}, False),
    ("x <= 2.0 * y", {"x": 2**53 + 1, "y": 2.0**52}, True),  # 2^53+1 as a double is 2^53
    ("x < y", {"x": 1, "y": 1.5}, True),
    ("x < y", {"x": "a", "y": 1}, ERROR),
]



def check(actual: Any, expected: Any) -> None:
    assert type(actual) is type(expected), f"{actual!r} is not {expected!r}"
    if isinstance(expected, float) and math.isnan(expected):
        assert math.isnan(actual)
    else:
        assert actual == expected


def _batch_of_one(compiled: Any, env: dict[str, Any]) -> Any:
    """`evaluate_each` over a one-item list (the item from env, else bound to an unused name)."""
    name = "item" if "item" in env else "unused_name"
    rest = {k: v for k, v in env.items() if k != name}
    (value,) = compiled.evaluate_each(rest, [env.get(name)], name)
    if isinstance(value, ExpressionEvalError):
        raise value
    return value


@pytest.mark.parametrize("evaluator", ["fast", "library", "batch"])
@pytest.mark.parametrize(("source", "env", "expected"), CASES, ids=[c[0] for c in CASES])
def test_semantics(evaluator: str, source: str, env: dict[str, Any], expected: Any) -> None:
    compiled = compile_expr(source)
    if evaluator != "library":
        assert compiled.fast, f"{source} should take the fast path"
    run = {"fast": compiled.evaluate, "library": compiled.evaluate_with_library,
           "batch": lambda e: _batch_of_one(compiled, e)}[evaluator]
    if expected is ERROR:
        with pytest.raises(ExpressionEvalError):
            run(env)
    else:
        check(run(env), expected)


def test_error_messages_name_what_failed() -> None:
    with pytest.raises(ExpressionEvalError, match="no key 'state' in item"):
        compile_expr("item.state == 'up'").evaluate({"item": {}})
    with pytest.raises(ExpressionEvalError, match="division by zero"):
        compile_expr("item.a / item.b").evaluate({"item": {"a": 1, "b": 0}})
    with pytest.raises(ExpressionEvalError, match="undefined variable 'item'"):
        compile_expr("item.a == 1").evaluate({})


def test_library_only_expressions_still_work() -> None:
    ts = compile_expr('timestamp("2026-01-01T00:00:00Z") + duration("1h") > timestamp(t)')
    assert not ts.fast
    assert ts.evaluate({"t": "2026-01-01T00:30:00Z"}) is True
    assert to_python(compile_expr('timestamp("2026-01-01T00:00:00Z") + duration("1h")').evaluate({})) == "2026-01-01T01:00:00Z"
    assert to_python(compile_expr('duration("90s")').evaluate({})) == 90.0
    greatest = compile_expr("nodes.map(n, math.greatest(n, 2))")
    assert not greatest.fast and greatest.names == {"nodes"} and greatest.evaluate({"nodes": [1, 3]}) == [2, 3]
    assert compile_expr("'Ab'.lowerAscii() + ['x', 'y'].join(',')").evaluate({}) == "abx,y"
    assert compile_expr("type(1) == int && type([]) == list").evaluate({}) is True
    assert compile_expr("type(x)").evaluate({"x": {}}) == "map"


def test_values_the_fast_path_does_not_model_go_to_the_library() -> None:
    big = compile_expr("x + 1")  # ints beyond int64 are uints in the library
    assert big.fast
    with pytest.raises(ExpressionEvalError):
        big.evaluate({"x": 2**63})
    assert compile_expr("x").evaluate({"x": 2**63}) == 2**63
    with pytest.raises(ExpressionEvalError, match="out of range"):  # beyond uint64: no CEL value
        compile_expr("x").evaluate({"x": 2**64})
    with pytest.raises(ExpressionEvalError, match="tuple"):  # not a JSON-like value
        compile_expr("x").evaluate({"x": (1, 2)})
    assert compile_expr('x.matches("^a.$")').evaluate({"x": "a\u00e9"}) is True


def test_long_logic_chains_compile() -> None:
    # CPython nests one block per operand of generated code; the fast path keeps chains flat
    for op, value in (("&&", "true"), ("||", "false")):
        source = f" {op} ".join([value] * 200)
        compiled = compile_expr(source)
        assert compiled.fast and compiled.evaluate({}) is (value == "true")


@pytest.mark.parametrize(
    ("source", "names"),
    [
        ("nodes.exists(n, n.id == params.node_id)", {"nodes", "params"}),
        ("item.a + other.b > 0", {"item", "other"}),
        ("[1, 2].all(x, x > limit)", {"limit"}),
        ("x.exists(x, x == 1)", {"x"}),
        ("nodes.map(n, n.cpu).exists(c, c > max_cpu)", {"nodes", "max_cpu"}),
        ('1u + nodes.filter(n, n > 1u).size() + b"x".size() + k', {"nodes", "k"}),  # library-only syntax
        ('has(a.b.c) && "lit" == "lit"', {"a"}),
    ],
)
def test_names_are_top_level_variables(source: str, names: set[str]) -> None:
    assert compile_expr(source).names == frozenset(names)


def test_evaluate_passes_only_referenced_names() -> None:
    compiled = compile_expr("item.a == 1")
    env = {"item": {"a": 1}, "unrelated": object()}  # unconvertible, must not reach the library
    assert compiled.evaluate(env) is True
    assert compiled.evaluate_with_library(env) is True


@pytest.mark.parametrize(
    ("source", "column"),
    [("x == ", 6), ("item.state ==== 1", 14), ("has(x)", 5), ("a &&\nb ||", 10)],
)
def test_syntax_errors_carry_a_column(source: str, column: int) -> None:
    with pytest.raises(ExpressionCompileError) as info:
        compile_expr(source)
    assert info.value.column == column
    assert info.value.source == source
    assert "invalid CEL expression" in str(info.value)


def test_empty_expression_is_a_compile_error() -> None:
    with pytest.raises(ExpressionCompileError, match="empty"):
        compile_expr("  ")


def test_compiled_programs_are_cached() -> None:
    assert compile_expr("item.a > 1") is compile_expr("item.a > 1")


# --------------------------------------------------------------------------- batch evaluation

def _per_item(compiled: Any, env: dict[str, Any], items: list[Any]) -> list[Any]:
    out = []
    for item in items:
        try:
            out.append(compiled.evaluate({**env, "item": item}))
        except ExpressionEvalError as exc:
            out.append(f"error: {exc}")
    return out


def _canonical(value: Any) -> str:
    """Comparable text: NaN equals NaN, and map key order is ignored (the library's maps have none)."""
    return json.dumps(value, sort_keys=True, default=repr)


def _batch(compiled: Any, env: dict[str, Any], items: list[Any]) -> list[Any]:
    return [f"error: {v}" if isinstance(v, ExpressionEvalError) else v for v in compiled.evaluate_each(env, items)]


ITEMS = [{"a": 1, "ok": True}, {"a": 2.5, "ok": False}, {"ok": False}, "not a map", {"a": 2**64, "ok": False},
         {"a": math.nan, "ok": False}, {"a": "text", "ok": True}]


@pytest.mark.parametrize(
    ("source", "env", "expected"),
    [
        # values, errors and library fallbacks (2^64) mixed in one list
        ("item.a <= 2.0 * stats.f", {"stats": {"f": 1.0}},
         [True, False, "error: cannot evaluate 'item.a <= 2.0 * stats.f': no key 'a' in item", ERROR, ERROR, False,
          ERROR]),
        # the item-independent part fails: an error where an item reaches it, not before
        ("item.ok || item.a < stats.missing", {"stats": {"f": 1.0}},
         [True, ERROR, ERROR, ERROR, ERROR, ERROR, True]),
        # a variable missing from env: every item errs, like one by one
        ("item.a < stats.f", {}, [ERROR] * len(ITEMS)),
        # an expression that does not read the item
        ("stats.f > 0.5", {"stats": {"f": 1.0}}, [True] * len(ITEMS)),
        # the macro variable shadows the item
        ("[1, 2].exists(item, item == 2)", {}, [True] * len(ITEMS)),
        ("item", {}, [ITEMS[0], ITEMS[1], ITEMS[2], "not a map", ERROR, ITEMS[5], ITEMS[6]]),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_batch_equals_one_by_one(source: str, env: dict[str, Any], expected: list[Any]) -> None:
    compiled = compile_expr(source)
    got = _batch(compiled, env, ITEMS)
    assert _canonical(got) == _canonical(_per_item(compiled, env, ITEMS))
    assert len(got) == len(expected)
    for value, want in zip(got, expected):
        if want is ERROR:
            assert isinstance(value, str) and value.startswith("error: cannot evaluate"), value
        else:
            assert _canonical(value) == _canonical(want)


def test_batch_of_nothing_is_empty() -> None:
    assert compile_expr("item.a > stats.missing").evaluate_each({"stats": {}}, []) == []


def test_batch_builds_new_containers_per_item() -> None:
    # values computed once for all items must not be one shared list
    values = compile_expr("item.a > 0 ? [stats.f] : []").evaluate_each({"stats": {"f": 1.0}}, [{"a": 1}, {"a": 2}])
    assert values == [[1.0], [1.0]] and values[0] is not values[1]


def test_batch_of_library_only_expressions() -> None:
    compiled = compile_expr("item.map(n, math.greatest(n * 2, 0))")
    assert not compiled.fast
    values = compiled.evaluate_each({}, [[1], "x"])
    assert values[0] == [2] and isinstance(values[1], ExpressionEvalError)
