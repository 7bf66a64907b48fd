"""The "Types" section of docs/config.md, generated from the type mapping itself and from a real
validation of an example config, so it says what the checker does (engine.docs appends it)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

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


def types_section() -> str:
    """The "Types" section, in Markdown."""
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
        "<!-- broken: queue.yaml -->",
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
    lines += ["```"]
    return "\n".join(lines)
