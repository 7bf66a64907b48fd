"""The one CEL adapter: compile once, evaluate per entity, convert results to plain Python.

Every expression is compiled by the `cel` library (common-expression-language), which decides
what is valid CEL and reports syntax errors. Expressions inside the subset the engine evaluates
per entity (field access, comparisons, arithmetic, `&&`/`||`, `has`, `in`, `size`, string
predicates, conversions, `exists`/`all`) are also translated to a Python function by
`engine._expr_fast`; that fast path is ~10-30× cheaper than a library call, which spends most of
its time converting Python values. The fast path hands any evaluation it cannot decide exactly
back to the library, so both paths return the same value or both raise.

`evaluate_each(env, items)` evaluates a per-entity expression for a whole list at once; the fast
path then runs one generated loop instead of one call per item, with the same results.
"""

from __future__ import annotations

import datetime as _dt
import functools
import importlib
import re
import sys
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any


class _LoadedOnFirstUse(types.ModuleType):
    """Stands in for a module until one of its attributes is read; then imports the real one."""

    def __getattr__(self, name: str) -> Any:
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        real = importlib.import_module(self.__name__)
        package, _, attribute = self.__name__.rpartition(".")
        setattr(sys.modules[package], attribute, real)
        return getattr(real, name)


# The `cel` package imports `cel.cli`, the library's interactive shell, and with it typer,
# prompt_toolkit and pygments: about 0.3 s of every opctl start, for a module the engine never
# uses. It is deferred, not removed: reading any attribute of `cel.cli` loads it in full.
if "cel" not in sys.modules:
    sys.modules.setdefault("cel.cli", _LoadedOnFirstUse("cel.cli"))

import cel  # noqa: E402

from engine import _expr_fast  # noqa: E402
from engine.errors import ExpressionCompileError, ExpressionEvalError  # noqa: E402

_ERROR_POSITION = re.compile(r"<input>:(\d+):(\d+): ?(.*)")
_MACRO_VARIABLE = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([_a-zA-Z][_a-zA-Z0-9]*)\s*,")


class CompiledExpr:
    """A compiled CEL expression; `evaluate(env)` reads only the variables in `names`."""

    __slots__ = ("source", "names", "fast", "_program", "_fast_fn", "_name_list", "_tree", "_each_fns")

    def __init__(self, source: str, names: frozenset[str], program: cel.Program,
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
        """Evaluate with the `cel` library only (reference semantics; used by tests and fallback)."""
        context = {name: env[name] for name in self._name_list if name in env}
        try:
            return self._program.execute(context)
        except Exception as exc:  # the library raises many built-in types; all mean "failed"
            raise ExpressionEvalError(f"cannot evaluate {self.source!r}: {_describe(exc)}") from None


def _outcome(evaluate: Callable[[Mapping[str, Any]], Any], env: Mapping[str, Any]) -> Any:
    try:
        return evaluate(env)
    except ExpressionEvalError as exc:
        return exc


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
    return CompiledExpr(source, names, program, fast_fn, tree)


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
