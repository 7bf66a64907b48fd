"""Hypothesis strategies from observation shapes (a subset of JSON Schema), for `--property`.

A small generator instead of a dependency: it covers what observation shapes need (types,
enum/const, properties/required, items with bounds, uniqueItems, numeric and string bounds,
pattern, anyOf/oneOf) and refuses any other constraining keyword by name, so a shape is never
silently generated wrong. Annotations (title, description, examples, default, format, $comment)
are ignored. Lists are kept short by default so counterexamples stay readable.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from hypothesis import strategies as st

from engine.errors import ConfigError

DEFAULT_MAX_ITEMS = 6
DEFAULT_MAX_LENGTH = 12
_ANNOTATIONS = frozenset({"title", "description", "examples", "default", "format", "$comment", "$schema", "$id", "readOnly", "writeOnly", "deprecated"})
_KNOWN = frozenset({
    "type", "enum", "const", "properties", "required", "additionalProperties", "items", "minItems", "maxItems",
    "uniqueItems", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength",
    "pattern", "anyOf", "oneOf",
}) | _ANNOTATIONS
_TYPES = ("null", "boolean", "integer", "number", "string", "array", "object")
# Readable text that shrinks to "", "0", "A"...: letters, digits and a few separators.
_TEXT = st.characters(min_codepoint=32, max_codepoint=126)


def strategy_for(schema: Any, where: str = "shape") -> st.SearchStrategy[Any]:
    """A strategy generating values valid under `schema`; ConfigError names an unsupported part."""
    if schema is True or schema == {}:
        return _any_json()
    if not isinstance(schema, Mapping):
        raise ConfigError(f"{where}: a JSON Schema here is a mapping, not {schema!r}")
    unknown = sorted(set(schema) - _KNOWN)
    if unknown:
        raise ConfigError(
            f"{where}: '{unknown[0]}' is not supported for generating data; "
            f"supported: {', '.join(sorted(_KNOWN - _ANNOTATIONS))}"
        )
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        values = schema["enum"]
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}.enum: a non-empty list of values")
        return st.sampled_from(values)
    for combinator in ("anyOf", "oneOf"):
        if combinator in schema:
            branches = schema[combinator]
            if not isinstance(branches, list) or not branches:
                raise ConfigError(f"{where}.{combinator}: a non-empty list of schemas")
            return st.one_of([strategy_for(b, f"{where}.{combinator}[{i}]") for i, b in enumerate(branches)])
    kinds = schema.get("type")
    if kinds is None:
        return _any_json()
    kinds = [kinds] if isinstance(kinds, str) else kinds
    if not isinstance(kinds, list) or not kinds or any(k not in _TYPES for k in kinds):
        raise ConfigError(f"{where}.type: one of {', '.join(_TYPES)} (or a list of them), not {schema['type']!r}")
    return st.one_of([_typed(k, schema, where) for k in kinds])


def _typed(kind: str, schema: Mapping[str, Any], where: str) -> st.SearchStrategy[Any]:
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        low, high = _bounds(schema, integer=True)
        return st.integers(min_value=low, max_value=high)
    if kind == "number":
        low, high = _bounds(schema, integer=False)
        return st.floats(
            min_value=low, max_value=high, allow_nan=False, allow_infinity=False,
            exclude_min="exclusiveMinimum" in schema, exclude_max="exclusiveMaximum" in schema,
        )
    if kind == "string":
        return _string(schema)
    if kind == "array":
        return _array(schema, where)
    return _object(schema, where)


def _bounds(schema: Mapping[str, Any], *, integer: bool) -> tuple[Any, Any]:
    low = schema.get("minimum")
    high = schema.get("maximum")
    if "exclusiveMinimum" in schema:
        low = schema["exclusiveMinimum"] + (1 if integer else 0)
    if "exclusiveMaximum" in schema:
        high = schema["exclusiveMaximum"] - (1 if integer else 0)
    if integer:  # CEL ints are 64-bit: a bigger JSON integer is no value an expression can read
        low = -(2**63) if low is None else max(int(-(-low // 1)), -(2**63))
        high = 2**63 - 1 if high is None else min(int(high // 1), 2**63 - 1)
    return low, high


def _string(schema: Mapping[str, Any]) -> st.SearchStrategy[str]:
    min_len = int(schema.get("minLength", 0))
    max_len = int(schema.get("maxLength", max(DEFAULT_MAX_LENGTH, min_len)))
    pattern = schema.get("pattern")
    if pattern is None:
        return st.text(_TEXT, min_size=min_len, max_size=max_len)
    # JSON Schema patterns search (unanchored), as from_regex does without fullmatch.
    return st.from_regex(pattern).filter(lambda s: min_len <= len(s) <= max_len)


def _array(schema: Mapping[str, Any], where: str) -> st.SearchStrategy[list[Any]]:
    items = strategy_for(schema.get("items", {}), f"{where}.items")
    min_items = int(schema.get("minItems", 0))
    max_items = int(schema.get("maxItems", max(DEFAULT_MAX_ITEMS, min_items)))
    unique = bool(schema.get("uniqueItems", False))
    return st.lists(
        items, min_size=min_items, max_size=max_items,
        unique_by=(lambda v: json.dumps(v, sort_keys=True)) if unique else None,
    )


def _object(schema: Mapping[str, Any], where: str) -> st.SearchStrategy[dict[str, Any]]:
    properties = schema.get("properties", {})
    required = schema.get("required", [])
    if not isinstance(properties, Mapping) or not isinstance(required, list):
        raise ConfigError(f"{where}: `properties` is a mapping and `required` a list")
    missing = [name for name in required if name not in properties]
    if missing:
        raise ConfigError(f"{where}.required: '{missing[0]}' has no schema under `properties`")
    extra = schema.get("additionalProperties", True)
    if extra not in (True, False) and not isinstance(extra, Mapping):
        raise ConfigError(f"{where}.additionalProperties: true, false or a schema")
    # Extra keys are allowed but never generated: an invariant must work with the declared ones.
    return st.fixed_dictionaries(
        {name: strategy_for(properties[name], f"{where}.properties.{name}") for name in required},
        optional={
            name: strategy_for(sub, f"{where}.properties.{name}")
            for name, sub in properties.items()
            if name not in required
        },
    )


def _any_json() -> st.SearchStrategy[Any]:
    scalars = st.none() | st.booleans() | st.integers() | st.text(_TEXT, max_size=DEFAULT_MAX_LENGTH)
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(_TEXT, max_size=6), inner, max_size=3),
        max_leaves=8,
    )
