"""The one CEL adapter: compile once, evaluate per entity, convert results to plain Python.

Every expression is compiled by the `cel` library (common-expression-language), which decides
what is valid CEL and reports syntax errors. Expressions inside the subset the engine evaluates
per entity (field access, comparisons, arithmetic, `&&`/`||`, `has`, `in`, `size`, string
predicates, conversions, `exists`/`all`) are also translated to a Python function by
`engine._expr_fast`; that fast path is ~10-30× cheaper than a library call, which spends most of
its time converting Python values. The fast path hands any evaluation it cannot decide exactly
back to the library, so both paths return the same value or both raise.
"""

from __future__ import annotations

import datetime as _dt
import functools
import re
from collections.abc import Mapping
from typing import Any

import cel

from engine import _expr_fast
from engine.errors import ExpressionCompileError, ExpressionEvalError

_ERROR_POSITION = re.compile(r"<input>:(\d+):(\d+): ?(.*)")
_MACRO_VARIABLE = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([_a-zA-Z][_a-zA-Z0-9]*)\s*,")


class CompiledExpr:
    """A compiled CEL expression; `evaluate(env)` reads only the variables in `names`."""

    __slots__ = ("source", "names", "fast", "_program", "_fast_fn", "_name_list")

    def __init__(self, source: str, names: frozenset[str], program: cel.Program,
                 fast_fn: Any | None) -> None:
        self.source = source
        self.names = names
        self.fast = fast_fn is not None
        self._program = program
        self._fast_fn = fast_fn
        self._name_list = tuple(sorted(names))

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

    def evaluate_with_library(self, env: Mapping[str, Any]) -> Any:
        """Evaluate with the `cel` library only (reference semantics; used by tests and fallback)."""
        context = {name: env[name] for name in self._name_list if name in env}
        try:
            return self._program.execute(context)
        except Exception as exc:  # the library raises many built-in types; all mean "failed"
            raise ExpressionEvalError(f"cannot evaluate {self.source!r}: {_describe(exc)}") from None


def _describe(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"no key {exc.args[0]!r}" if exc.args else "missing key"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, RuntimeError) and text.startswith("Undefined variable or function"):
        return text.split(". ")[0]  # drop the library's generic hint
    if text.startswith("No such overload"):
        return "no such overload: the operation is not defined for these operand types (CEL does not convert between types)"
    return text


@functools.lru_cache(maxsize=4096)
def compile_expr(source: str) -> CompiledExpr:
    """Compile CEL `source`; raise ExpressionCompileError (with a 1-based column) if it is invalid."""
    if not isinstance(source, str) or not source.strip():
        raise ExpressionCompileError("the CEL expression is empty", source=str(source), column=None)
    try:
        program = cel.compile(source)
    except Exception as exc:  # ValueError on syntax errors; anything else is just as fatal
        raise _compile_error(source, exc) from None
    try:
        tree = _expr_fast.parse(source)
    except _expr_fast.Unsupported:
        return CompiledExpr(source, _library_names(program, source), program, None)
    names = _expr_fast.free_names(tree)
    try:
        fast_fn = _expr_fast.build(tree, source).fn
    except _expr_fast.Unsupported:
        fast_fn = None
    return CompiledExpr(source, names, program, fast_fn)


def _library_names(program: cel.Program, source: str) -> frozenset[str]:
    # The library lists comprehension variables too; drop those bound by a macro. Only used
    # for syntax our parser skips (uint/bytes/raw literals, escapes), so this heuristic is rare.
    bound = set(_MACRO_VARIABLE.findall(source))
    return frozenset(name.split(".")[0] for name in program.variables()) - bound


def _compile_error(source: str, exc: Exception) -> ExpressionCompileError:
    text = str(exc)
    m = _ERROR_POSITION.search(text)
    if m is None:
        return ExpressionCompileError(f"invalid CEL expression {source!r}: {text.strip()}", source=source)
    line, col, detail = int(m.group(1)), int(m.group(2)), m.group(3).strip()
    # report the column within the whole expression (multi-line sources count earlier lines)
    column = sum(len(part) + 1 for part in source.split("\n")[: line - 1]) + col
    return ExpressionCompileError(
        f"invalid CEL expression {source!r}: {detail} (at column {column})", source=source, column=column
    )


def to_python(value: Any) -> Any:
    """Turn a CEL result into plain JSON-able Python: timestamps → ISO 8601 text, durations →
    seconds (float), optionals → their value or None, bytes → text."""
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
    if isinstance(value, cel.OptionalValue):
        return to_python(value.value()) if value.has_value() else None
    return str(value)
