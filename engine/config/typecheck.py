"""The expression checker: types every CEL expression of a config before anything runs.

`check(source, scope)` walks the expression (parsed by the fast path's parser) with the types
of its variables (`engine.config.celtypes`) and returns its type and every problem, each at the
offset in the source where it is: unknown names and fields (with "did you mean"), operators
applied to types they are not defined for, equality between types that are never equal (a
string and an int, a value not in an enum), macros over something that is not a list or map,
non-bool predicates and conditions. What is untyped (DYN) is never reported: the checker says
nothing false. Functions are left to the CEL library's own checker (`library_problems`), run
with every variable declared `dyn`, so what it says about a function is a mistake for any data.

Unions (a shape's `anyOf`, a nullable field, `number` = int | double) are treated soundly: an
operation is an error only when no combination of members supports it.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from engine import _expr_fast as ast
from engine.expr import library_env
from engine.config.celtypes import (
    BOOL, BYTES, DOUBLE, DURATION, DYN, INT, NULL, STRING, TIMESTAMP, TYPE, UINT,
    Enum, List, Map, Obj, Prim, T, describe, members, prim_of, union,
)

_TYPE_NAMES = frozenset({"int", "uint", "double", "string", "bool", "bytes", "list", "map", "null_type", "type", "dyn"})
_NUMBERS = frozenset({"int", "uint", "double"})
_STRING_PREDICATES = frozenset({"startsWith", "endsWith", "contains", "matches"})
_STRING_METHODS = {"lowerAscii": STRING, "upperAscii": STRING, "trim": STRING, "reverse": STRING, "replace": STRING,
                   "substring": STRING, "charAt": STRING, "format": STRING, "indexOf": INT, "lastIndexOf": INT,
                   "split": List(STRING)}
_TIME_GETTERS = frozenset({"getFullYear", "getMonth", "getDate", "getDayOfMonth", "getDayOfWeek", "getDayOfYear",
                           "getHours", "getMinutes", "getSeconds", "getMilliseconds"})
_CONVERSIONS = {"int": INT, "uint": UINT, "double": DOUBLE, "string": STRING, "bool": BOOL, "bytes": BYTES,
                "timestamp": TIMESTAMP, "duration": DURATION, "dyn": DYN, "type": TYPE}
_MATH_SAME = frozenset({"math.greatest", "math.least", "math.abs", "math.ceil", "math.floor", "math.round",
                        "math.trunc", "math.sign", "math.sqrt"})
_MATH_BOOL = frozenset({"math.isNaN", "math.isInf", "math.isFinite"})
_MACROS = ("all", "exists", "exists_one", "filter", "map")
# For "did you mean": every function and method the engine's CEL has.
KNOWN_FUNCTIONS = sorted(
    {"size", "has", "exists", "all", "exists_one", "filter", "map", "matches", "join", "cel.bind",
     "base64.encode", "base64.decode", "strings.quote", "math.bitAnd", "math.bitOr", "math.bitXor", "math.bitNot",
     "math.bitShiftLeft", "math.bitShiftRight"}
    | _STRING_PREDICATES | set(_STRING_METHODS) | _TIME_GETTERS | set(_CONVERSIONS) | _MATH_SAME | _MATH_BOOL
)


@dataclass(frozen=True)
class TypeProblem:
    start: int  # 0-based offset in the expression's source
    message: str


@dataclass(frozen=True)
class Scope:
    """The variables an expression may read, with their types. `unknown_name(name)` words the
    problem of a name that is not one of them (the caller knows what the expression is for)."""

    names: Mapping[str, T]
    unknown_name: Callable[[str], str] = field(default=lambda name: f"unknown name '{name}'")


@dataclass(frozen=True)
class Checked:
    type: T
    problems: list[TypeProblem]


def check(source: str, scope: Scope) -> Checked | None:
    """The type of `source` and its problems; None when the parser does not read the syntax
    (message construction, two-variable macros): then only the library's checks apply."""
    try:
        tree = ast.parse(source)
    except ast.Unsupported as reason:
        if str(reason) == ast.TWO_VARIABLES:  # the library parses them but cannot evaluate them
            return Checked(DYN, [TypeProblem(0, "two-variable comprehensions (exists(i, v, ...), transformList, "
                                                "transformMap) are not available; use the one-variable macros")])
        return None
    checker = _Checker(source, scope)
    result = checker.visit(tree, dict(scope.names))
    return Checked(result, checker.problems)


def could_be(t: T, *names: str) -> bool:
    """Whether a value of `t` may be of one of the primitive kinds `names` (or is untyped);
    "list" and "map" name the containers (a map also covers objects)."""
    for m in members(t):
        if m is DYN:
            return True
        p = prim_of(m)
        if p is not None and p.name in names:
            return True
        if isinstance(m, List) and "list" in names:
            return True
        if isinstance(m, (Map, Obj)) and "map" in names:
            return True
    return False


# --------------------------------------------------------------------------- the library's check


@functools.lru_cache(maxsize=256)
def _checking_env(names: frozenset[str]) -> object:
    return library_env(names)


_LIBRARY_ERROR = re.compile(r"ERROR: <input>:(\d+):(\d+): (.*)")


def library_problems(source: str, names: frozenset[str]) -> list[TypeProblem]:
    """What cel-cpp's own checker finds with every variable `dyn`: functions that do not exist,
    function overloads no argument could match (operators are left to the walk)."""
    env = _checking_env(names)
    try:
        env.compile(source)  # type: ignore[attr-defined]
    except Exception as exc:  # RuntimeError with one "ERROR: <input>:line:col: ..." per problem
        out = []
        lines = source.split("\n")
        for m in _LIBRARY_ERROR.finditer(str(exc)):
            line, col, text = int(m.group(1)), int(m.group(2)), m.group(3).strip()
            if re.match(r"found no matching overload for '(_|@|!)", text):
                continue  # operators are the walk's to judge: the library's static typing refuses
                # some that run (a ?: with an int and a double branch)
            offset = sum(len(part) + 1 for part in lines[: line - 1]) + col - 1
            name = re.search(r"'([^']+)'", text)
            if name is not None:  # the library points at the call's parenthesis: point at the name
                found = source.rfind(name.group(1).rsplit(".", 1)[-1], 0, offset + 1)
                offset = found if found >= 0 else offset
            out.append(TypeProblem(offset, _library_message(text)))
        return out[:1]
    return []


def _library_message(text: str) -> str:
    m = re.match(r"undeclared reference to '([^']+)'", text)
    if m is not None:
        name = m.group(1)
        if name in _STRING_METHODS or name in _STRING_PREDICATES or name in _TIME_GETTERS:
            return f"'{name}' is a method: call it on a value, e.g. x.{name}(...)"
        return f"unknown function '{name}'" + _did_you_mean(name, KNOWN_FUNCTIONS)
    m = re.match(r"found no matching overload for '([^']+)' applied to '\((.*)\)'", text)
    if m is not None:
        return f"no function '{m.group(1)}' takes ({m.group(2)})"
    return text


def _an(t: T) -> str:
    """`describe(t)` with its article: "an int", "a string"."""
    text = describe(t)
    return ("an " if text[:1] in "aeio" else "a ") + text


def _did_you_mean(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


# --------------------------------------------------------------------------- the walk


class _Checker:
    def __init__(self, source: str, scope: Scope) -> None:
        self.source = source
        self.scope = scope
        self.problems: list[TypeProblem] = []

    def text(self, node: ast.Node) -> str:
        return self.source[node.start: node.end]

    def report(self, start: int, message: str) -> None:
        self.problems.append(TypeProblem(start, message))

    def visit(self, node: ast.Node, env: dict[str, T]) -> T:
        return getattr(self, "visit_" + type(node).__name__)(node, env)

    # ------------------------------------------------------------------ leaves

    def visit_Lit(self, node: ast.Lit, env: dict[str, T]) -> T:
        return _literal_type(node.value)

    def visit_Ident(self, node: ast.Ident, env: dict[str, T]) -> T:
        if node.name in env:
            return env[node.name]
        if node.name in _TYPE_NAMES:
            return TYPE
        self.report(node.start, self.scope.unknown_name(node.name))
        return DYN

    # ------------------------------------------------------------------ fields and indexes

    def visit_Select(self, node: ast.Select, env: dict[str, T]) -> T:
        operand = self.visit(node.operand, env)
        start = self.source.find(node.field, node.operand.end)
        result = self.field(operand, node.field, node.operand, start if start >= 0 else node.start)
        return BOOL if node.test_only else result

    def field(self, t: T, name: str, operand: ast.Node, start: int) -> T:
        found: list[T] = []
        objects: list[Obj] = []
        for m in members(t):
            if m is DYN:
                return DYN
            if isinstance(m, Obj):
                f = m.field(name)
                if f is None:
                    objects.append(m)
                else:
                    found.append(f)
            elif isinstance(m, Map):
                found.append(m.value)
        if found:
            return union(found)
        what = self.text(operand)
        if objects:
            names = sorted({n for o in objects for n in o.names})
            self.report(start, f"unknown field '{name}' of {what}" + _did_you_mean(name, names)
                        + f" (fields of {what} in its shape: {', '.join(names) or 'none'})")
        elif not all(m == NULL for m in members(t)):
            self.report(start, f"cannot read field '{name}' of {what}: it is {_an(t)}, not a map")
        return DYN

    def visit_Index(self, node: ast.Index, env: dict[str, T]) -> T:
        operand = self.visit(node.operand, env)
        index = self.visit(node.index, env)
        found: list[T] = []
        for m in members(operand):
            if m is DYN:
                return DYN
            if isinstance(m, List):
                if not could_be(index, "int", "uint") and not could_be(index, "double"):
                    self.report(node.index.start, f"a list index is an int, but {self.text(node.index)} is {_an(index)}")
                found.append(m.elem)
            elif isinstance(m, Map):
                found.append(m.value)
            elif isinstance(m, Obj):
                if isinstance(node.index, ast.Lit) and isinstance(node.index.value, str):
                    return self.field(m, node.index.value, node.operand, node.index.start)
                found.extend([v for _, v in m.fields] + ([m.extra] if m.extra is not None else []))
        if not found:
            self.report(node.index.start - 1, f"cannot index {self.text(node.operand)}: it is {_an(operand)}")
            return DYN
        return union(found)

    # ------------------------------------------------------------------ operators

    def visit_Unary(self, node: ast.Unary, env: dict[str, T]) -> T:
        t = self.visit(node.operand, env)
        if node.op == "!":
            self.need_bool(t, node.operand, "the operand of !")
            return BOOL
        if not could_be(t, "int", "double"):
            self.report(node.start, f"unary - is defined for int and double, but {self.text(node.operand)} is {_an(t)}")
            return DYN
        return union(m for m in members(t) if could_be(m, "int", "double"))

    def need_bool(self, t: T, node: ast.Node, what: str) -> None:
        if not could_be(t, "bool"):
            self.report(node.start, f"{what} must be a bool, but {self.text(node)} is {_an(t)}")

    def visit_Binary(self, node: ast.Binary, env: dict[str, T]) -> T:
        if node.op in ("&&", "||"):
            for operand in ast._chain(node, node.op):
                self.need_bool(self.visit(operand, env), operand, f"each operand of {node.op}")
            return BOOL
        left = self.visit(node.left, env)
        right = self.visit(node.right, env)
        if node.op in ("==", "!="):
            self.equality(node, left, right)
            return BOOL
        if node.op == "in":
            self.membership(node, left, right)
            return BOOL
        if node.op in ("<", "<=", ">", ">="):
            if not any(_orderable(a, b) for a in members(left) for b in members(right)):
                self.overload(node, left, right)
            return BOOL
        results = [r for a in members(left) for b in members(right) if (r := _arith(node.op, a, b)) is not None]
        if not results:
            self.overload(node, left, right)
            return DYN
        return union(results)

    def overload(self, node: ast.Binary, left: T, right: T) -> None:
        lt, rt = describe(left), describe(right)
        hint = ""
        kinds = {prim_of(m).name for m in members(left) + members(right) if prim_of(m) is not None}
        if {"int", "double"} <= kinds or {"uint", "double"} <= kinds:
            hint = "; CEL does not mix int and double in arithmetic: convert one side with double(...)"
        elif {"string"} & kinds and kinds & _NUMBERS:
            hint = "; CEL does not convert between strings and numbers: compare with a number (no quotes) or convert with int(...)"
        where = self.operator_offset(node)
        self.report(where, f"{node.op} is not defined for ({lt}, {rt}): {self.text(node.left)} {node.op} {self.text(node.right)}{hint}")

    def operator_offset(self, node: ast.Binary) -> int:
        found = self.source.find(node.op, node.left.end, node.right.start)
        return found if found >= 0 else node.start

    def equality(self, node: ast.Binary, left: T, right: T) -> None:
        for lit, other, other_node in ((node.right, left, node.left), (node.left, right, node.right)):
            if isinstance(lit, ast.Lit) and self.not_in_enum(lit, other, other_node):
                return
        if not any(_comparable(a, b) for a in members(left) for b in members(right)):
            self.report(self.operator_offset(node),
                        f"{self.text(node.left)} {node.op} {self.text(node.right)} compares {_an(left)} with "
                        f"{_an(right)}: they are never equal" + _quote_hint(node, left, right))

    def not_in_enum(self, lit: ast.Lit, other: T, other_node: ast.Node) -> bool:
        """Report a literal compared with an enum it is not a value of; True when reported."""
        enums = [m for m in members(other) if isinstance(m, Enum)]
        if not enums or len(enums) != len(members(other)):
            return False
        value = lit.value
        if any(_litkind_of(value) == e.prim.name and value in e.values for e in enums):
            return False
        if not any(_litkind_of(value) == e.prim.name for e in enums):
            return False  # a different kind: the type check says so
        values = ", ".join(f'"{v}"' if isinstance(v, str) else repr(v) for e in enums for v in e.values)
        shown = f'"{value}"' if isinstance(value, str) else repr(value)
        self.report(lit.start, f"{shown} is not one of the values of {self.text(other_node)} ({values}): the comparison is always false")
        return True

    def membership(self, node: ast.Binary, left: T, right: T) -> None:
        ok = False
        for m in members(right):
            if m is DYN:
                return
            if isinstance(m, List):
                if isinstance(node.left, ast.Lit) and self.not_in_enum(node.left, m.elem, node.right):
                    return
                ok = ok or any(_comparable(a, b) for a in members(left) for b in members(m.elem))
            elif isinstance(m, Map):
                ok = ok or any(_comparable(a, b) for a in members(left) for b in members(m.key))
            elif isinstance(m, Obj):
                ok = ok or could_be(left, "string")
        if ok:
            return
        if could_be(right, "string"):
            self.report(self.operator_offset(node), f"`in` tests list elements and map keys, but {self.text(node.right)} "
                        f"is a string: write {self.text(node.right)}.contains({self.text(node.left)})")
        elif any(isinstance(m, (List, Map, Obj)) for m in members(right)):
            self.report(self.operator_offset(node), f"{self.text(node.left)} ({_an(left)}) is never in "
                        f"{self.text(node.right)} ({_an(right)})")
        else:
            self.report(self.operator_offset(node), f"`in` needs a list or map on its right, but {self.text(node.right)} is {_an(right)}")

    def visit_Cond(self, node: ast.Cond, env: dict[str, T]) -> T:
        self.need_bool(self.visit(node.cond, env), node.cond, "the condition of ?:")
        return union((self.visit(node.then, env), self.visit(node.other, env)))

    # ------------------------------------------------------------------ literals

    def visit_ListLit(self, node: ast.ListLit, env: dict[str, T]) -> T:
        items = [self.visit(i, env) for i in node.items]
        return List(union(items) if items else DYN)

    def visit_MapLit(self, node: ast.MapLit, env: dict[str, T]) -> T:
        duplicate = ast.duplicate_literal_key(node)
        if duplicate is not None:
            self.report(duplicate.start, f"duplicate key {self.text(duplicate)} in a map literal")
        keys = [self.visit(k, env) for k, _ in node.entries]
        values = [self.visit(v, env) for _, v in node.entries]
        if node.entries and all(isinstance(k, ast.Lit) and isinstance(k.value, str) for k, _ in node.entries):
            return Obj(tuple((k.value, v) for (k, _), v in zip(node.entries, values)), None)  # type: ignore[attr-defined]
        return Map(union(keys) if keys else DYN, union(values) if values else DYN)

    # ------------------------------------------------------------------ macros and calls

    def visit_Comprehension(self, node: ast.Comprehension, env: dict[str, T]) -> T:
        r = self.visit(node.range, env)
        var_types: list[T] = []
        for m in members(r):
            if m is DYN:
                var_types = [DYN]
                break
            if isinstance(m, List):
                var_types.append(m.elem)
            elif isinstance(m, Map):
                var_types.append(m.key)
            elif isinstance(m, Obj):
                var_types.append(STRING)
        if not var_types:
            self.report(node.range.start, f"{node.macro}() needs a list or map, but {self.text(node.range)} is {_an(r)}")
            var_types = [DYN]
        var = union(var_types)
        inner = {**env, node.var: var}
        pred = self.visit(node.pred, inner)
        if node.macro != "map" or node.transform is not None:
            self.need_bool(pred, node.pred, f"the predicate of {node.macro}()")
        if node.macro in ("exists", "all", "exists_one"):
            return BOOL
        if node.macro == "filter":
            return List(var)
        return List(self.visit(node.transform, inner) if node.transform is not None else pred)

    def visit_Call(self, node: ast.Call, env: dict[str, T]) -> T:
        name = node.name
        if node.target is None and name == "cel.bind" and len(node.args) == 3 and isinstance(node.args[0], ast.Ident):
            bound = self.visit(node.args[1], env)
            return self.visit(node.args[2], {**env, node.args[0].name: bound})
        if node.target is not None and node.args and isinstance(node.args[0], ast.Ident) \
                and node.args[0].name not in env and name not in KNOWN_FUNCTIONS:
            # `list.any(x, ...)`: a macro that does not exist (its variable is no name either)
            self.report(self.source.find(name, node.target.end), f"there is no macro or method '{name}'"
                        + _did_you_mean(name, list(_MACROS)) + f" (macros: {', '.join(_MACROS)})")
            return DYN
        if node.target is None and "." in name and name not in KNOWN_FUNCTIONS:
            self.report(node.start, f"unknown function '{name}'" + _did_you_mean(name, KNOWN_FUNCTIONS))
            return DYN
        receiver = self.visit(node.target, env) if node.target is not None else None
        args = [self.visit(a, env) for a in node.args]
        if receiver is None:
            return self.function(node, name, args)
        return self.method(node, name, receiver, args)

    def function(self, node: ast.Call, name: str, args: list[T]) -> T:
        if name == "size" and len(args) == 1:
            self.sized(args[0], node.args[0])
            return INT
        if name in _CONVERSIONS and len(args) == 1:
            if name in ("int", "uint", "double", "string", "bool") and not could_be(
                    args[0], "int", "uint", "double", "string", "bool", "bytes", "timestamp", "duration", "null"):
                self.report(node.args[0].start, f"{name}() cannot convert {self.text(node.args[0])}, {_an(args[0])}")
            return _CONVERSIONS[name]
        if name in _MATH_SAME:
            return union(args) if args else DYN
        if name in _MATH_BOOL:
            return BOOL
        if name == "base64.encode":
            return STRING
        if name == "base64.decode":
            return BYTES
        return DYN

    def method(self, node: ast.Call, name: str, receiver: T, args: list[T]) -> T:
        target = node.target
        assert target is not None
        if name == "size" and not args:
            self.sized(receiver, target)
            return INT
        if name in _STRING_PREDICATES or name in _STRING_METHODS:
            if not could_be(receiver, "string"):
                self.report(target.start, f"{name}() is a string method, but {self.text(target)} is {_an(receiver)}")
            elif name in _STRING_PREDICATES and args and not could_be(args[0], "string"):
                self.report(node.args[0].start, f"{name}() takes a string, but {self.text(node.args[0])} is {_an(args[0])}")
            return BOOL if name in _STRING_PREDICATES else _STRING_METHODS[name]
        if name == "join":
            return STRING
        if name in _TIME_GETTERS:
            return INT
        return DYN

    def sized(self, t: T, node: ast.Node) -> None:
        if not could_be(t, "string", "bytes", "list", "map"):
            self.report(node.start, f"size() is defined for strings, bytes, lists and maps, but {self.text(node)} is {_an(t)}")


# --------------------------------------------------------------------------- type rules


def kind_of(t: T) -> str:
    """int, uint, double, string, bool, null, bytes, timestamp, duration, type, list, map or dyn."""
    p = prim_of(t)
    if p is not None:
        return p.name
    if isinstance(t, List):
        return "list"
    if isinstance(t, (Map, Obj)):
        return "map"
    return "dyn"


def _litkind_of(value: object) -> str:
    return kind_of(_literal_type(value))


def _literal_type(value: object) -> T:
    if value is None:
        return NULL
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, ast.UInt):
        return UINT
    if isinstance(value, int):
        return INT
    if isinstance(value, float):
        return DOUBLE
    if isinstance(value, bytes):
        return BYTES
    return STRING


def _comparable(a: T, b: T) -> bool:
    ka, kb = kind_of(a), kind_of(b)
    if "dyn" in (ka, kb) or "null" in (ka, kb):
        return True  # null compares (false) with anything: a nullable check is fine
    if ka in _NUMBERS and kb in _NUMBERS:
        return True
    return ka == kb


def _orderable(a: T, b: T) -> bool:
    ka, kb = kind_of(a), kind_of(b)
    if "dyn" in (ka, kb):
        return True
    if ka in _NUMBERS and kb in _NUMBERS:
        return True
    return ka == kb and ka in ("string", "bool", "bytes", "timestamp", "duration")


def _arith(op: str, a: T, b: T) -> T | None:
    ka, kb = kind_of(a), kind_of(b)
    if "dyn" in (ka, kb):
        return DYN
    if op == "%":
        return Prim(ka) if ka == kb and ka in ("int", "uint") else None
    if ka == kb and ka in _NUMBERS:
        return Prim(ka)
    if op == "+":
        if ka == kb and ka in ("string", "bytes"):
            return Prim(ka)
        if ka == kb == "list":
            return List(union((a.elem, b.elem)))  # type: ignore[attr-defined]
        if {ka, kb} == {"timestamp", "duration"}:
            return TIMESTAMP
        if ka == kb == "duration":
            return DURATION
    if op == "-":
        if ka == "timestamp" and kb == "duration":
            return TIMESTAMP
        if ka == kb == "timestamp" or ka == kb == "duration":
            return DURATION
    return None


def _quote_hint(node: ast.Binary, left: T, right: T) -> str:
    for lit, other in ((node.right, left), (node.left, right)):
        if isinstance(lit, ast.Lit) and isinstance(lit.value, str) and could_be(other, "int", "double"):
            try:
                float(lit.value)
            except ValueError:
                continue
            return f"; write {lit.value} without quotes to compare numbers"
    return ""


