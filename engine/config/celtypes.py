"""The types the expression checker reasons with, and where they come from.

A type is one of: `DYN` (unknown: the checker stays silent about it), a primitive (`int`,
`uint`, `double`, `string`, `bool`, `null`, `bytes`, `timestamp`, `duration`, `type`), an enum
(a primitive limited to listed values), `List(elem)`, `Map(key, value)`, an `Obj` (a map with
known fields, from a JSON Schema object) and a `Union` (a value of any one member).

From a JSON Schema (`from_schema`, an observation's `shape`):

* `type: object` with `properties` → an Obj with those fields. Reading an undeclared field is
  an error unless `additionalProperties` is `true` (any field, DYN) or a schema (its type):
  a shape declares what expressions may rely on, extra keys in the data are never read;
* `type: array` → List of `items` (DYN without);
* `enum` / `const` → an enum of their values (one primitive) or a union (mixed values);
* `integer` → int, `number` → int | double (JSON writes 5 for 5.0), `string`, `boolean`, `null`;
  a list of types, `anyOf` and `oneOf` → a union;
* anything else (no `type`, `{}`) → DYN.

From an observation's source kind when it has no shape (`of_observation`): prometheus → a list
of `{labels: map(string, string), value: double | null | string}`; metrics → a map from sample
name to lists of flat samples or histogram series; redis → the reply of the command (PING a
string, INFO a map, counts an int, others DYN); http → DYN, or the type of `select` over
`body` (DYN), `status` (int) and `headers` (map(string, string)). A fanout target wraps it in
a list of `{endpoint, ok, value, error}`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


class T:
    """A CEL type as the checker sees it."""


@dataclass(frozen=True)
class _Dyn(T):
    pass


@dataclass(frozen=True)
class Prim(T):
    name: str  # int uint double string bool null bytes timestamp duration type


@dataclass(frozen=True)
class Enum(T):
    prim: Prim
    values: tuple[Any, ...]


@dataclass(frozen=True)
class List(T):
    elem: T


@dataclass(frozen=True)
class Map(T):
    key: T
    value: T


@dataclass(frozen=True)
class Obj(T):
    fields: tuple[tuple[str, T], ...]
    extra: T | None  # the type of undeclared fields, or None: reading one is an error

    def field(self, name: str) -> T | None:
        for key, value in self.fields:
            if key == name:
                return value
        return self.extra

    @property
    def names(self) -> list[str]:
        return [key for key, _ in self.fields]


@dataclass(frozen=True)
class Union(T):
    members: tuple[T, ...]


DYN: T = _Dyn()
INT, UINT, DOUBLE, STRING, BOOL, NULL = (Prim(n) for n in ("int", "uint", "double", "string", "bool", "null"))
BYTES, TIMESTAMP, DURATION, TYPE = (Prim(n) for n in ("bytes", "timestamp", "duration", "type"))
NUMBER = Union((INT, DOUBLE))
STRING_MAP = Map(STRING, STRING)


def union(members: Iterable[T]) -> T:
    """The union of `members`, flattened and without repeats; DYN absorbs everything."""
    out: list[T] = []
    for m in members:
        parts = m.members if isinstance(m, Union) else (m,)
        for p in parts:
            if p is DYN:
                return DYN
            if p not in out:
                out.append(p)
    if not out:
        return DYN
    return out[0] if len(out) == 1 else Union(tuple(out))


def members(t: T) -> tuple[T, ...]:
    return t.members if isinstance(t, Union) else (t,)


def prim_of(t: T) -> Prim | None:
    """The primitive of a primitive or enum type."""
    if isinstance(t, Enum):
        return t.prim
    return t if isinstance(t, Prim) else None


def contains_dyn(t: T) -> bool:
    if t is DYN:
        return True
    if isinstance(t, List):
        return contains_dyn(t.elem)
    if isinstance(t, Map):
        return contains_dyn(t.value)
    if isinstance(t, Obj):
        return any(contains_dyn(v) for _, v in t.fields)
    if isinstance(t, Union):
        return any(contains_dyn(m) for m in t.members)
    return False


def describe(t: T, depth: int = 0) -> str:
    """A short CEL-like name: `string`, `list(int)`, `map(string, double)`, `{id, state}`."""
    if t is DYN:
        return "dyn"
    if isinstance(t, Prim):
        return t.name
    if isinstance(t, Enum):
        return f"{t.prim.name} enum (" + " | ".join(repr(v) if not isinstance(v, str) else f'"{v}"' for v in t.values) + ")"
    if isinstance(t, List):
        return f"list({describe(t.elem, depth + 1)})"
    if isinstance(t, Map):
        return f"map({describe(t.key, depth + 1)}, {describe(t.value, depth + 1)})"
    if isinstance(t, Obj):
        if depth > 0:
            return "map"
        return "{" + ", ".join(t.names) + (", ..." if t.extra is not None else "") + "}"
    if isinstance(t, Union):
        return " | ".join(describe(m, depth + 1) for m in t.members)
    return "?"


# --------------------------------------------------------------------------- JSON Schema


_JSON_TYPES = {"integer": INT, "number": NUMBER, "string": STRING, "boolean": BOOL, "null": NULL}


def from_schema(schema: Any) -> T:
    """The CEL type of values valid under JSON Schema `schema` (see the module docstring)."""
    if not isinstance(schema, Mapping):
        return DYN
    if "const" in schema:
        return _enum([schema["const"]])
    if "enum" in schema and isinstance(schema["enum"], list) and schema["enum"]:
        return _enum(schema["enum"])
    for combinator in ("anyOf", "oneOf"):
        branches = schema.get(combinator)
        if isinstance(branches, list) and branches:
            return union(from_schema(b) for b in branches)
    kinds = schema.get("type")
    if isinstance(kinds, list):
        return union(_typed(k, schema) for k in kinds) if kinds else DYN
    if isinstance(kinds, str):
        return _typed(kinds, schema)
    return DYN


def _typed(kind: Any, schema: Mapping[str, Any]) -> T:
    if kind in _JSON_TYPES:
        return _JSON_TYPES[kind]
    if kind == "array":
        return List(from_schema(schema.get("items", {})))
    if kind == "object":
        properties = schema.get("properties")
        extra_schema = schema.get("additionalProperties")
        if not isinstance(properties, Mapping):
            properties = {}
        if extra_schema is True:
            extra: T | None = DYN
        elif isinstance(extra_schema, Mapping):
            extra = from_schema(extra_schema)
        else:
            extra = None
        if not properties and extra_schema is None:
            return Map(STRING, DYN)  # `{type: object}` alone: any fields
        return Obj(tuple((str(name), from_schema(sub)) for name, sub in properties.items()), extra)
    return DYN


def _enum(values: list[Any]) -> T:
    kinds: dict[str, list[Any]] = {}
    for v in values:
        kinds.setdefault(_value_kind(v), []).append(v)
    parts: list[T] = []
    for kind, vs in kinds.items():
        prim = {"int": INT, "double": DOUBLE, "string": STRING, "bool": BOOL, "null": NULL}.get(kind)
        parts.append(DYN if prim is None else NULL if prim is NULL else Enum(prim, tuple(vs)))
    return union(parts)


def _value_kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "double"
    if isinstance(v, str):
        return "string"
    return "other"


# --------------------------------------------------------------------------- source kinds


_SAMPLE = Obj((("labels", STRING_MAP), ("value", union((DOUBLE, NULL)))), None)
_HISTOGRAM = Obj(
    (("labels", STRING_MAP), ("count", union((DOUBLE, NULL))), ("sum", union((DOUBLE, NULL))),
     ("buckets", List(Obj((("le", union((DOUBLE, NULL))), ("count", union((DOUBLE, NULL)))), None))),
     ("p50", union((DOUBLE, NULL))), ("p90", union((DOUBLE, NULL))), ("p99", union((DOUBLE, NULL)))),
    None,
)
PROMETHEUS = List(Obj((("labels", STRING_MAP), ("value", union((DOUBLE, NULL, STRING)))), None))
METRICS = Map(STRING, List(union((_SAMPLE, _HISTOGRAM))))
_REDIS_INTS = frozenset({"DBSIZE", "STRLEN", "HLEN", "ZCARD", "SCARD", "LLEN", "XLEN", "TTL", "PTTL", "EXISTS",
                         "ZCOUNT", "SISMEMBER", "SLOWLOG LEN", "MEMORY USAGE", "OBJECT IDLETIME", "OBJECT FREQ"})
HTTP_SELECT_SCOPE = {"body": DYN, "status": INT, "headers": STRING_MAP}


# The entity of the built-in `target_up` (engine.target_health builds it), for its runbook's params.
TARGET_UP_ITEM = Obj((("target", STRING), ("up", BOOL), ("observations", List(STRING)),
                      ("error", union((STRING, NULL))), ("down_after", STRING)), None)


def redis_reply(command: str) -> T:
    if command == "PING":
        return STRING
    if command in ("INFO", "CLUSTER INFO"):
        return Map(STRING, DYN)
    if command in _REDIS_INTS:
        return INT
    if command in ("GET", "TYPE", "OBJECT ENCODING"):
        return union((STRING, NULL))
    return DYN


def fanout(value: T) -> T:
    """A fanout observation: one tagged answer per endpoint."""
    return List(Obj((("endpoint", STRING), ("ok", BOOL), ("value", union((value, NULL))),
                     ("error", union((STRING, NULL)))), None))
