"""Run cel-spec's simple conformance tests (`testdata/*.textproto`) against an evaluator.

An evaluator is `evaluate(expr, bindings) -> value`, raising an `OpctlError` (or whatever the
caller names as `expected_errors`) for a CEL error. Each test ends in one outcome:

* `pass`, `wrong` (a different value), `missing_error` (a value where the spec wants an error),
  `unexpected_error` (an error where the spec wants a value), `crash` (any other exception: a
  traceback a user would see);
* `skip` with a reason, for what the engine cannot express: protobuf messages and enums,
  containers, unknowns, disabled macros, type-checking-only tests.

Values compare with their type (1, 1.0 and true differ; a uint is an int in Python); NaN
equals NaN. The data files are vendored under `testdata/` (Apache-2.0, see its NOTICE).
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.cel_spec.textproto import Ident, Message, parse

TESTDATA = Path(__file__).parent / "testdata"
CORE_FILES = ("basic", "comparisons", "conversions", "dynamic", "enums", "fields", "fp_math", "integer_math",
              "lists", "logic", "macros", "macros2", "namespace", "parse", "plumbing", "proto2", "proto3",
              "string", "timestamps", "type_deduction", "wrappers")
EXTENSION_FILES = ("string_ext", "math_ext")
ERROR = object()  # the expected outcome of a test that wants an evaluation error

# Expressions naming protobuf types (message construction, qualified type names, enums).
_PROTO = re.compile(r"\b(?:google\.protobuf|cel\.expr|TestAllTypes|NestedTestAllTypes|NestedMessage|"
                    r"GlobalEnum|NestedEnum|TestRequired|proto[23]\.|Int32Value|Int64Value|UInt32Value|"
                    r"UInt64Value|FloatValue|DoubleValue|BoolValue|StringValue|BytesValue|ListValue|Struct|"
                    r"Any|Duration\{|Timestamp\{)")


class Skip(Exception):
    """The test needs something the engine does not have."""


@dataclass(frozen=True)
class Case:
    file: str
    section: str
    name: str
    expr: str
    bindings: dict[str, Any]
    expected: Any  # a value, or ERROR

    @property
    def id(self) -> str:
        return f"{self.file}/{self.section}/{self.name}"


@dataclass(frozen=True)
class Outcome:
    case_id: str
    kind: str  # pass | wrong | missing_error | unexpected_error | crash | skip
    detail: str = ""


# ------------------------------------------------------------------------------ reading cases


def load(file: str) -> tuple[list[Case], list[Outcome]]:
    """The cases of one data file that the engine can express, and a skip outcome for each other."""
    root = parse((TESTDATA / f"{file}.textproto").read_text(encoding="utf-8"))
    cases: list[Case] = []
    skipped: list[Outcome] = []
    for section in root.all("section"):
        for test in section.all("test"):
            case_id = f"{file}/{section.text('name')}/{test.text('name')}"
            try:
                cases.append(_case(file, section.text("name"), test))
            except Skip as reason:
                skipped.append(Outcome(case_id, "skip", str(reason)))
    return cases, skipped


def _case(file: str, section: str, test: Message) -> Case:
    expr = test.text("expr")
    for flag in ("disable_macros", "check_only"):
        if test.get(flag):
            raise Skip(flag)
    if test.has("container"):
        raise Skip("container")
    if test.has("unknown") or test.has("any_unknowns"):
        raise Skip("unknowns")
    for decl in test.all("type_env"):
        if _mentions(decl, "message_type") or _mentions(decl, "abstract_type") or decl.has("function"):
            raise Skip("declares messages or functions")
    if _PROTO.search(expr):
        raise Skip("protobuf types")
    bindings = {}
    for binding in test.all("bindings"):
        outer = binding.get("value")
        if outer is None or not outer.has("value"):
            raise Skip("binding is not a value")
        name = binding.text("key")
        if "." in name:
            raise Skip("qualified variable name")
        bindings[name] = value_of(outer.get("value"))
    if test.has("eval_error") or test.has("any_eval_errors"):
        expected: Any = ERROR
    elif test.has("value"):
        expected = value_of(test.get("value"))
    elif test.has("typed_result"):
        result = test.get("typed_result").get("result")
        if result is None:
            raise Skip("type-checking only")
        expected = value_of(result)
    else:
        expected = True  # simple.proto: no result means the expression is true
    return Case(file, section, test.text("name"), expr, bindings, expected)


def _mentions(msg: Message, name: str) -> bool:
    if msg.has(name):
        return True
    return any(isinstance(v, Message) and _mentions(v, name) for vs in msg.fields.values() for v in vs)


_WRAPPERS = {f"[type.googleapis.com/google.protobuf.{t}]" for t in (
    "Int32Value", "Int64Value", "UInt32Value", "UInt64Value", "FloatValue", "DoubleValue", "BoolValue",
    "StringValue", "BytesValue")}


def value_of(v: Message) -> Any:
    """A `cel.expr.Value` as plain Python (what the engine returns)."""
    if v.has("int64_value") or v.has("uint64_value"):
        return int(v.get("int64_value", v.get("uint64_value")))
    if v.has("double_value"):
        return float(v.get("double_value"))
    if v.has("string_value"):
        return v.get("string_value").decode("utf-8")
    if v.has("bytes_value"):
        return bytes(v.get("bytes_value"))
    if v.has("bool_value"):
        return bool(v.get("bool_value"))
    if v.has("null_value"):
        return None
    if v.has("list_value"):
        return [value_of(item) for item in v.get("list_value").all("values")]
    if v.has("map_value"):
        out = {}
        for entry in v.get("map_value").all("entries"):
            out[value_of(entry.get("key"))] = value_of(entry.get("value"))
        return out
    if v.has("type_value"):
        return TypeName(v.get("type_value").decode("utf-8"))
    if v.has("object_value"):
        return _object(v.get("object_value"))
    if v.has("enum_value"):
        raise Skip("enum value")
    raise Skip(f"value kind {sorted(v.fields)}")


@dataclass(frozen=True)
class TypeName:
    """An expected CEL type value, by name ("int", "list", "google.protobuf.Timestamp")."""

    name: str


def _object(any_msg: Message) -> Any:
    (type_url, body), = any_msg.fields.items()
    body = body[0]
    if type_url == "[type.googleapis.com/google.protobuf.Duration]":
        return _dt.timedelta(seconds=body.get("seconds", 0), microseconds=body.get("nanos", 0) / 1000)
    if type_url == "[type.googleapis.com/google.protobuf.Timestamp]":
        epoch = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
        return epoch + _dt.timedelta(seconds=body.get("seconds", 0), microseconds=body.get("nanos", 0) / 1000)
    if type_url in _WRAPPERS:
        raw = body.get("value", 0)
        if "String" in type_url:
            return (raw or b"").decode("utf-8")
        if "Bytes" in type_url:
            return bytes(raw or b"")
        if "Bool" in type_url:
            return bool(raw)
        if "Float" in type_url or "Double" in type_url:
            return float(raw)
        return int(raw)
    raise Skip(f"object value {type_url}")


def cases(files: tuple[str, ...]) -> tuple[list[Case], list[Outcome]]:
    found: list[Case] = []
    skipped: list[Outcome] = []
    for file in files:
        c, s = load(file)
        found += c
        skipped += s
    return found, skipped


# ------------------------------------------------------------------------------ running


Evaluate = Callable[[str, dict[str, Any]], Any]


def run_case(case: Case, evaluate: Evaluate, expected_errors: tuple[type[BaseException], ...]) -> Outcome:
    try:
        actual = evaluate(case.expr, case.bindings)
    except expected_errors as exc:
        if case.expected is ERROR:
            return Outcome(case.id, "pass")
        return Outcome(case.id, "unexpected_error", f"{case.expr!r}: {exc}")
    except Exception as exc:  # anything else is a crash: a traceback a user would see
        return Outcome(case.id, "crash", f"{case.expr!r}: {type(exc).__name__}: {exc}")
    if case.expected is ERROR:
        return Outcome(case.id, "missing_error", f"{case.expr!r} gave {actual!r}, the spec wants an error")
    if same(actual, case.expected):
        return Outcome(case.id, "pass")
    return Outcome(case.id, "wrong", f"{case.expr!r} gave {actual!r}, the spec wants {case.expected!r}")


def run(files: tuple[str, ...], evaluate: Evaluate,
        expected_errors: tuple[type[BaseException], ...]) -> list[Outcome]:
    found, skipped = cases(files)
    return [run_case(case, evaluate, expected_errors) for case in found] + skipped


def tally(outcomes: list[Outcome]) -> dict[str, int]:
    counts = Counter(o.kind for o in outcomes)
    return {kind: counts.get(kind, 0) for kind in ("pass", "wrong", "missing_error", "unexpected_error", "crash", "skip")}


def same(actual: Any, expected: Any) -> bool:
    if isinstance(expected, TypeName):
        return _type_name(actual) == expected.name
    if isinstance(expected, float):
        if actual.__class__ is not float:
            return False
        return (math.isnan(actual) and math.isnan(expected)) or actual == expected
    if isinstance(expected, bool) or actual.__class__ is bool:
        return actual is expected
    if isinstance(expected, int):
        return actual.__class__ is int and actual == expected
    if isinstance(expected, bytes):
        return isinstance(actual, (bytes, bytearray)) and bytes(actual) == expected
    if isinstance(expected, list):
        return isinstance(actual, list) and len(actual) == len(expected) and all(map(same, actual, expected))
    if isinstance(expected, dict):
        if not isinstance(actual, dict) or len(actual) != len(expected):
            return False
        return all(any(_key_same(k, ak) and same(av, v) for ak, av in actual.items()) for k, v in expected.items())
    if expected is None:
        return actual is None
    return bool(type(actual) is type(expected) and actual == expected)


def _key_same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def _type_name(value: Any) -> str | None:
    if isinstance(value, str):  # the engine gives a type value as its name
        return value
    name = getattr(value, "name", None)
    if callable(name):
        name = name()
    return None if name is None else str(name).lower() if str(name).isupper() else str(name)


def summary(outcomes: list[Outcome]) -> Iterator[str]:
    for o in outcomes:
        if o.kind not in ("pass", "skip"):
            yield f"{o.kind}: {o.case_id}: {o.detail}"
