"""Generate docs/config.md: every section and field of the language, each with an example.

Examples come from the field's own `examples` when it declares one, else from the first place
the shipped configs (configs/*.yaml) use the field. A field with neither is an error, so the
reference cannot silently lose its examples.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from engine.config.introspect import descend, field_key, is_model, unwrap
from engine.config.loader import load_document
from engine.config.models import Config
from engine.config.problems import shorten
from engine.config.schema import config_schema


def collect_examples(configs: Iterable[Path], root: type[BaseModel] = Config) -> dict[str, dict[str, Any]]:
    """model name -> field key -> the first value found in the shipped files of the `root` kind."""
    found: dict[str, dict[str, Any]] = {}
    for path in configs:
        doc, _ = load_document(path, env={})
        if doc is not None:
            _walk(root, doc.data, found)
    return found


def _walk(annotation: Any, data: Any, found: dict[str, dict[str, Any]]) -> None:
    annotation = unwrap(annotation)
    if is_model(annotation) and isinstance(data, dict):
        into = found.setdefault(annotation.__name__, {})
        for key, value in data.items():
            into.setdefault(key, value)
            child = descend(annotation, key)
            if child is not None:
                _walk(child, value, found)
    elif isinstance(data, dict):
        for value in data.values():
            child = descend(annotation, "x")
            if child is not None:
                _walk(child, value, found)
    elif isinstance(data, list):
        child = descend(annotation, 0)
        if child is not None:
            for value in data:
                _walk(child, value, found)


def _models(root: type[BaseModel] = Config) -> list[type[BaseModel]]:
    """`root` and every model reachable from it, in document order."""
    seen: list[type[BaseModel]] = []

    def visit(model: type[BaseModel]) -> None:
        if model in seen:
            return
        seen.append(model)
        for info in model.model_fields.values():
            for child in _nested_models(info.annotation):
                visit(child)

    visit(root)
    return seen


def _nested_models(annotation: Any) -> list[type[BaseModel]]:
    annotation = unwrap(annotation)
    if is_model(annotation):
        return [annotation]
    out = []
    for part in ("x", 0):
        child = descend(annotation, part)
        if child is not None and child is not annotation:
            out.extend(_nested_models(child))
    return out


def render_config_reference(configs: Iterable[Path]) -> str:
    return "\n".join([render_reference(Config, config_schema(), configs, CONFIG_HEADER), *types_section()])


CONFIG_HEADER = [
    "# The opctl config language",
    "",
    "Generated from the models by `python -m engine.config.docs` (a test fails when this file",
    "is stale). The JSON Schema for editors is `schemas/opctl.schema.json`; start a config with",
    "`# yaml-language-server: $schema=../schemas/opctl.schema.json`.",
    "",
    "Conventions: unknown keys are errors; durations are strings with a unit (`250ms`, `5s`,",
    "`2m`, `1h30m`, `1d`); paths are relative to the config file; `${VAR}` and `${VAR:-default}`",
    "are replaced from the environment in any string that is not a CEL expression (URLs, tokens,",
    "paths, `vars` values); CEL expressions see every observation by name, `prev` (the previous",
    "tick's values), `now` (unix seconds), `vars` and, inside `for_each`, `item`; action guards",
    "also see `params`. Every expression is type-checked before anything runs: see",
    "[Types](#types) at the end.",
    "",
]


def render_reference(root: type[BaseModel], root_schema: dict[str, Any], files: Iterable[Path], header: list[str]) -> str:
    """A reference of one file kind: every model reachable from `root`, each field with an example
    (the field's own `examples`, else the first use in `files`)."""
    examples = collect_examples(files, root)
    defs = root_schema.get("$defs", {})
    missing: list[str] = []
    lines = list(header)
    for model in _models(root):
        schema = root_schema if model is root else defs.get(model.__name__, {})
        title = f"{model.__name__} (the document)" if model is root else model.__name__
        lines += [f"## {title}", "", (model.__doc__ or "").strip().splitlines()[0] if model.__doc__ else "", ""]
        lines += ["| key | type | default | description |", "|---|---|---|---|"]
        example: dict[str, Any] = {}
        for name, info in model.model_fields.items():
            key = field_key(name, info)
            prop = schema.get("properties", {}).get(key, {})
            required = key in schema.get("required", [])
            default = "required" if required else f"`{shorten(str(prop.get('default')))}`"
            description = (prop.get("description") or info.description or "").replace("|", "\\|").replace("\n", " ")
            lines.append(f"| `{key}` | {_type(prop)} | {default} | {description} |")
            value = _example(model, key, info, examples)
            if value is _MISSING:
                missing.append(f"{model.__name__}.{key}")
            else:
                example[key] = value
        lines += ["", "Example:", "", "```yaml", yaml.safe_dump(example, sort_keys=False, width=100, allow_unicode=True).rstrip(), "```", ""]
    if missing:
        raise ValueError(f"no example for: {', '.join(missing)}; add `examples=[...]` to the field or use it in configs/")
    return "\n".join(lines)


# A config with the mistakes the checker exists for; the section shows what `opctl validate` says.
_TYPES_EXAMPLE = """\
version: 1
subject: {name: queue}
targets: {api: {url: "http://127.0.0.1:9000"}}
vars:
  max_age_s: {type: int, value: "${QUEUE_MAX_AGE:-60}", description: Oldest message age allowed.}
observations:
  queues:
    http: {target: api, path: /queues}
    shape:
      type: array
      items:
        type: object
        required: [name, state, oldest_age_s]
        properties:
          name: {type: string}
          state: {enum: [running, paused]}
          oldest_age_s: {type: integer}
invariants:
  - name: queue_moves
    for_each: queues
    key: item.name
    expr: item.stat == "running" && item.oldest_age_s < vars.max_age_s
  - name: queue_not_paused
    for_each: queues
    key: item.name
    expr: item.state != "pause" && item.oldest_age_s > "0"
"""


def types_section() -> list[str]:
    """The "Types" section: generated from the type mapping itself and from a real validation
    of `_TYPES_EXAMPLE`, so it says what the checker does."""
    import tempfile

    from engine.config import celtypes as ct
    from engine.config.checks import VAR_TYPES
    from engine.config.validate import validate_file

    schemas = [{"type": "string"}, {"type": "integer"}, {"type": "number"}, {"type": "boolean"}, {"type": "null"},
               {"enum": ["up", "down"]}, {"type": ["string", "null"]}, {"type": "array", "items": {"type": "integer"}},
               {"type": "object", "properties": {"id": {"type": "string"}}},
               {"type": "object", "properties": {"id": {"type": "string"}}, "additionalProperties": True},
               {"type": "object", "additionalProperties": {"type": "number"}},
               {"anyOf": [{"type": "string"}, {"type": "integer"}]}, {}]
    lines = [
        "## Types",
        "",
        "`opctl validate` (and `opctl run` at start-up) type-checks every CEL expression: invariant",
        "`for_each`, `key`, `expr` and `resolve_when`, runbook params, action `when` guards and",
        "observation `select`s. The types come from each observation's `shape` (a JSON Schema of its",
        "value) or, without one, from its source kind; `prev` has the observations' types, `now` is",
        "a double, `item` is an element of `for_each`, `params` (in guards) follows the action's",
        "params schema and `vars` the declared variables.",
        "",
        "| JSON Schema in `shape` | CEL type the checker uses |",
        "|---|---|",
    ]
    for schema in schemas:
        lines.append(f"| `{json.dumps(schema)}` | `{ct.describe(ct.from_schema(schema))}` |")
    lines += [
        "",
        "An object's undeclared fields are errors to read unless `additionalProperties` is `true` (any",
        "field, untyped) or a schema (its type): the shape says what expressions may rely on, and the",
        "data may carry more. `number` is int or double because JSON writes `5` for 5.0.",
        "",
        "| source without a `shape` | type |",
        "|---|---|",
        f"| `prometheus` | `{ct.describe(ct.PROMETHEUS.elem)}` per element: labels `map(string, string)`, value double, null or string |",  # type: ignore[attr-defined]
        "| `metrics` | `map(string, list(sample or histogram series))`: `{labels, value}` or `{labels, count, sum, buckets, p50, p90, p99}` |",
        f"| `redis` | by command: PING `{ct.describe(ct.redis_reply('PING'))}`, INFO `{ct.describe(ct.redis_reply('INFO'))}`, DBSIZE and other counts `int`, others `dyn` |",
        "| `http` | `dyn`; with `select`, the select's type over `body` (dyn), `status` (int) and `headers` (map(string, string)) |",
        f"| a `fanout` target | `{ct.describe(ct.fanout(ct.INT))}` around the value (here an int) |",
        "",
        "What is reported, at the `file:line:col` of the exact place inside the expression: unknown",
        "names and fields (with \"did you mean\"), operators applied to types they are not defined",
        "for (CEL never converts: `1 + 1.0` and `x > \"0\"` are errors), equality between types",
        "that are never equal (a string and an int, a value not in an enum), non-bool invariants,",
        "`resolve_when`s and guards, a `for_each` that is not a list, runbook params whose type the",
        "action's params schema does not take, and functions or macros that do not exist (the CEL",
        "library's own checker, every variable `dyn`). Where a value is untyped (`dyn`: no shape and",
        "an untyped source) the checker says nothing. `opctl validate --strict` makes \"an expression",
        "reads an observation that has no shape and whose source does not type it\" an error.",
        "",
        "`vars:` declares typed values: `type` is one of " + ", ".join(f"`{k}`" for k in VAR_TYPES)
        + " (a duration is written `90s` and seen as seconds, a double). The value is parsed once,",
        "at load; expressions read `vars.<name>`. `${...}` inside a CEL expression is an error:",
        "the environment reaches expressions only through `vars`. For this config:",
        "",
        "```yaml",
        _TYPES_EXAMPLE.rstrip(),
        "```",
        "",
        "`QUEUE_MAX_AGE=abc opctl validate queue.yaml` says:",
        "",
        "```",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "queue.yaml"
        path.write_text(_TYPES_EXAMPLE)
        for problem in validate_file(path, env={"QUEUE_MAX_AGE": "abc"}):
            lines.append(problem.as_text().replace(str(path), "queue.yaml"))
    lines += ["```", ""]
    return lines


_MISSING = object()


def _example(model: type[BaseModel], key: str, info: Any, examples: dict[str, dict[str, Any]]) -> Any:
    if info.examples:
        return info.examples[0]
    if key in examples.get(model.__name__, {}):
        value = examples[model.__name__][key]
        return _trim(value)
    return _MISSING


def _trim(value: Any) -> Any:
    """Keep examples short: at most two entries of any list or mapping."""
    if isinstance(value, list):
        return [_trim(v) for v in value[:2]]
    if isinstance(value, dict):
        return {k: _trim(v) for k, v in list(value.items())[:2]}
    return value


def _type(prop: dict[str, Any]) -> str:
    if "$ref" in prop:
        return prop["$ref"].rsplit("/", 1)[-1]
    if "enum" in prop:
        return " \\| ".join(f"`{v}`" for v in prop["enum"])
    if "const" in prop:
        return f"`{prop['const']}`"
    if "anyOf" in prop:
        return " or ".join(_type(p) for p in prop["anyOf"] if p.get("type") != "null")
    kind = prop.get("type", "any")
    if kind == "array":
        return f"list of {_type(prop.get('items', {}))}"
    if kind == "object" and isinstance(prop.get("additionalProperties"), dict):
        return f"map of {_type(prop['additionalProperties'])}"
    if kind == "object" and prop.get("patternProperties"):
        return f"map of {_type(next(iter(prop['patternProperties'].values())))}"
    if prop.get("pattern", "").startswith("^(\\d+"):
        return "duration"
    return str(kind)




if __name__ == "__main__":
    root = Path(__file__).resolve().parents[2]
    (root / "docs" / "config.md").write_text(render_config_reference(sorted((root / "configs").glob("*.yaml"))))
