"""The one CEL adapter: compile once, evaluate per entity, convert results to plain Python.

Every expression is compiled by Google's CEL runtime (`cel-expr-python`, cel-cpp underneath),
which decides what is valid CEL and reports syntax errors; the strings, math, bindings and
encoders extensions are loaded. Expressions inside the subset the engine evaluates per entity
(field access, comparisons, arithmetic, `&&`/`||`, `has`, `in`, `size`, string predicates,
conversions, the `exists`/`all`/`exists_one`/`filter`/`map` macros) are also translated to a
Python function by `engine._expr_fast`; that fast path is ~5-30× cheaper than a library call,
which spends most of its time converting Python values. The fast path follows the CEL spec
(tests/cel_spec runs the official conformance suite over both paths together) and hands any
evaluation it cannot decide exactly back to the library, so both paths return the same value or
both raise.

The library reports a runtime error as an ERROR value, not an exception; `evaluate` turns it
into `ExpressionEvalError`, as it does for the exceptions the library raises (a duplicate key in
a map literal, the iteration budget of its comprehensions, a value it cannot convert).

`evaluate_each(env, items)` evaluates a per-entity expression for a whole list at once; the fast
path then runs one generated loop instead of one call per item, with the same results.
"""

from __future__ import annotations

import datetime as _dt
import functools
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cel_expr_python import cel
from cel_expr_python.ext import ext_bindings, ext_encoders, ext_math, ext_strings

from engine import _expr_fast
from engine.errors import ExpressionCompileError, ExpressionEvalError

_ERROR_POSITION = re.compile(r"<input>:(\d+):(\d+): ?(.*)")
_STATUS_PREFIX = re.compile(r"^[A-Z_]+: ")
_OVERLOAD = re.compile(r"No matching overloads? found\s*:\s*(\S+?)\((.*)\)")
_MACRO_VARIABLE = re.compile(r"\.\s*(?:all|exists|exists_one|existsOne|map|filter|transformList|transformMap)\s*\(\s*([_a-zA-Z][_a-zA-Z0-9]*)\s*,")
_IDENTIFIER = re.compile(r"(?<![.\w`'\"])([_a-zA-Z][_a-zA-Z0-9]*)\b(?!\s*\()")
_OPERATORS = {"_+_": "+", "_-_": "-", "_*_": "*", "_/_": "/", "_%_": "%", "_<_": "<", "_<=_": "<=", "_>_": ">",
              "_>=_": ">=", "_==_": "==", "_!=_": "!=", "-_": "unary -", "!_": "!", "@in": "in", "_[_]": "[]"}
_KIND_NAMES = {"int64": "int", "uint64": "uint", "string": "string", "double": "double", "bool": "bool",
               "bytes": "bytes", "map": "map", "list": "list", "null_type": "null"}


def library_env(names: frozenset[str] = frozenset()) -> cel.Env:
    """A library environment with the extensions configs may use and `names` declared `dyn`
    (for the library's checker: engine.config.typecheck)."""
    return cel.NewEnv(variables={n: cel.Type.DYN for n in names},
                      extensions=[ext_strings.ExtStrings(), ext_math.ExtMath(), ext_bindings.ExtBindings(),
                                  ext_encoders.ExtEncoders()])


@functools.cache
def _env() -> cel.Env:
    """The environment evaluation compiles in: no declarations, since expressions are compiled
    unchecked (engine.config.typecheck types them before anything runs)."""
    return library_env()


class CompiledExpr:
    """A compiled CEL expression; `evaluate(env)` reads only the variables in `names`."""

    __slots__ = ("source", "names", "fast", "_program", "_fast_fn", "_name_list", "_tree", "_each_fns")

    def __init__(self, source: str, names: frozenset[str], program: cel.Expression,
                 fast_fn: Any | None, tree: _expr_fast.Node | None = None) -> None:
        self.source = source
        self.names = names
        self.fast = fast_fn is not None
        self._program = program
        self._fast_fn = fast_fn
        self._name_list = tuple(sorted(names))
        self._tree = tree if fast_fn is not None else None
        # generated batch loops by the name items are bound to, built on first use
        self._each_fns: dict[str, _expr_fast.EachFn | None] = {}

    def __repr__(self) -> str:
        return f"CompiledExpr({self.source!r}, fast={self.fast})"

    def evaluate(self, env: Mapping[str, Any]) -> Any:
        """Evaluate against `env` (may hold more names than needed); raise ExpressionEvalError."""
        fn = self._fast_fn
        if fn is not None:
            try:
                return fn(env)
            except _expr_fast.CelError as exc:
                raise ExpressionEvalError(f"cannot evaluate {self.source!r}: {exc}") from None
            except _expr_fast.Fallback:
                pass  # a value the fast path does not model exactly: ask the library
        return self.evaluate_with_library(env)

    def evaluate_each(self, env: Mapping[str, Any], items: Sequence[Any], name: str = "item") -> list[Any]:
        """`evaluate` for every item of `items`, bound to the variable `name` on top of `env`:
        the list of values, with the ExpressionEvalError in the place of each failed item."""
        each = self._each_fn(name)
        batch = each(env, items) if each is not None else None
        if batch is None:
            return self._each_one_by_one(env, items, name, self.evaluate)
        values, failed = batch
        if not failed:
            return values
        item_env: dict[str, Any] | None = None
        for index, value in enumerate(values):
            if isinstance(value, _expr_fast.CelError):
                values[index] = ExpressionEvalError(f"cannot evaluate {self.source!r}: {value}")
            elif value is _expr_fast.Fallback:
                if item_env is None:
                    item_env = dict(env)
                item_env[name] = items[index]
                values[index] = _outcome(self.evaluate_with_library, item_env)
        return values

    def _each_fn(self, name: str) -> _expr_fast.EachFn | None:
        try:
            return self._each_fns[name]
        except KeyError:
            pass
        each: _expr_fast.EachFn | None = None
        if self._tree is not None:
            try:
                each = _expr_fast.build_each(self._tree, self.source, name)[0]
            except _expr_fast.Unsupported:
                each = None
        self._each_fns[name] = each
        return each

    @staticmethod
    def _each_one_by_one(env: Mapping[str, Any], items: Sequence[Any], name: str,
                         evaluate: Callable[[Mapping[str, Any]], Any]) -> list[Any]:
        item_env = dict(env)
        values = []
        for item in items:
            item_env[name] = item
            values.append(_outcome(evaluate, item_env))
        return values

    def evaluate_with_library(self, env: Mapping[str, Any]) -> Any:
        """Evaluate with the library only (reference semantics; used by tests and fallback)."""
        context = {name: env[name] for name in self._name_list if name in env}
        try:
            value = self._program.eval(data=context)
        except Exception as exc:  # the library raises RuntimeError, TypeError... all mean "failed"
            raise ExpressionEvalError(f"cannot evaluate {self.source!r}: {_describe(str(exc))}") from None
        if value.type() == cel.Type.ERROR:
            raise ExpressionEvalError(f"cannot evaluate {self.source!r}: {_describe(str(value.value()))}")
        return _plain(value)


def _outcome(evaluate: Callable[[Mapping[str, Any]], Any], env: Mapping[str, Any]) -> Any:
    try:
        return evaluate(env)
    except ExpressionEvalError as exc:
        return exc


def _describe(text: str) -> str:
    """The library's error text as a sentence for the user."""
    text = text.strip().splitlines()[0] if text.strip() else "evaluation failed"
    text = _STATUS_PREFIX.sub("", text).removesuffix(" [INVALID_ARGUMENT]").strip()
    m = _OVERLOAD.search(text)
    if m is not None:
        op = _OPERATORS.get(m.group(1), m.group(1))
        kinds = ", ".join(_KIND_NAMES.get(k.strip(), k.strip()) for k in m.group(2).split(",") if k.strip())
        return f"no such overload: {op} is not defined for ({kinds}); CEL does not convert between types"
    m = re.match(r'No value with name "([^"]+)" found in Activation', text)
    if m is not None:
        return f"undefined variable '{m.group(1)}'"
    m = re.match(r'Key not found in map : "?(.*?)"?$', text)
    if m is not None:
        return f"no key {m.group(1)!r}"
    if text == "Applying SELECT to non-message type":
        return "cannot read a field of a value that is not a map"
    return text


def _plain(value: cel.Value) -> Any:
    """A library value as plain Python: lists, dicts, str, int (uint too), float, bool, None,
    bytes, datetime, timedelta; a type value is its CEL name ("int", "list", "map")."""
    if value.type() == cel.Type.TYPE:
        return repr(value).split("<", 1)[0]
    try:
        plain = value.plain_value()
    except (TypeError, SystemError):  # a value inside has no Python form (an optional)
        raise ExpressionEvalError(f"the result {value!r} has no plain value") from None
    return _bytes_to_bytes(plain)


def _bytes_to_bytes(v: Any) -> Any:
    if isinstance(v, bytearray):
        return bytes(v)
    if isinstance(v, list):
        return [_bytes_to_bytes(x) for x in v]
    if isinstance(v, dict):
        return {_bytes_to_bytes(k): _bytes_to_bytes(x) for k, x in v.items()}
    if isinstance(v, cel.Type):
        return repr(v).split("<", 1)[0].lower()
    return v


@functools.lru_cache(maxsize=4096)
def compile_expr(source: str) -> CompiledExpr:
    """Compile CEL `source`; raise ExpressionCompileError (with a 1-based column) if it is invalid."""
    if not isinstance(source, str) or not source.strip():
        raise ExpressionCompileError("the CEL expression is empty", source=str(source), column=None)
    try:
        program = _env().compile(source, disable_check=True)
    except Exception as exc:  # RuntimeError on syntax errors; anything else is just as fatal
        raise _compile_error(source, exc) from None
    try:
        tree = _expr_fast.parse(source)
    except _expr_fast.Unsupported:
        return CompiledExpr(source, _library_names(source), program, None)
    names = _expr_fast.free_names(tree)
    try:
        fast_fn = _expr_fast.build(tree, source).fn
    except _expr_fast.Unsupported:
        fast_fn = None
    return CompiledExpr(source, names, program, fast_fn, tree)


def _library_names(source: str) -> frozenset[str]:
    # Only for syntax our parser skips (message construction, two-variable macros): identifiers
    # not after a dot and not called, less the variables macros bind, less CEL's own words.
    text = re.sub(r"(?:[rRbB]{0,2})(\"\"\"[\s\S]*?\"\"\"|'\'\'[\s\S]*?'\'\'|\"(?:\\.|[^\"\\])*\"|'(?:\\.|[^'\\])*')", '""', source)
    bound = set(_MACRO_VARIABLE.findall(text)) | set(re.findall(r"\(\s*[_a-zA-Z]\w*\s*,\s*([_a-zA-Z]\w*)\s*,", text))
    words = {"true", "false", "null", "in", "int", "uint", "double", "string", "bytes", "bool", "list", "map",
             "null_type", "type", "dyn", "math", "strings", "cel", "base64"}
    return frozenset(_IDENTIFIER.findall(text)) - bound - words


def _compile_error(source: str, exc: Exception) -> ExpressionCompileError:
    text = str(exc)
    m = _ERROR_POSITION.search(text)
    if m is None:
        return ExpressionCompileError(f"invalid CEL expression {source!r}: {_describe(text)}", source=source)
    line, col, detail = int(m.group(1)), int(m.group(2)), m.group(3).strip()
    # report the column within the whole expression (multi-line sources count earlier lines)
    column = sum(len(part) + 1 for part in source.split("\n")[: line - 1]) + col
    return ExpressionCompileError(
        f"invalid CEL expression {source!r}: {detail} (at column {column})", source=source, column=column
    )


def to_python(value: Any) -> Any:
    """Turn a CEL result into plain JSON-able Python: timestamps → ISO 8601 text, durations →
    seconds (float), bytes → text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [to_python(item) for item in value]
    if isinstance(value, dict):
        return {(key if isinstance(key, (str, int, float, bool)) else str(to_python(key))): to_python(item)
                for key, item in value.items()}
    if isinstance(value, _dt.datetime):
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", errors="backslashreplace")
    return str(value)
