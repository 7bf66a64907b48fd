"""`opctl validate`: one broken config per problem category, located exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli import main
from engine.config.validate import load_config
from engine.documents import validate_paths
from engine.errors import ConfigError

BASE = """\
version: 1
subject:
  name: demo
  context_file: context.md
targets:
  api: {url: "http://127.0.0.1:9"}
  cache: {url: "redis://127.0.0.1:9/0"}
interval: 5s
observations:
  nodes:
    http: {target: api, path: /v1/nodes}
    select: body.nodes
  memory:
    redis: {target: cache, command: [INFO, memory]}
invariants:
  - name: node_up
    for_each: nodes
    key: item.id
    expr: item.state == "up"
    for: 10s
    message: "node {{ item.id }} is {{ item.state }}"
    runbook:
      - action: drop_node
        params: {node_id: item.id}
  - name: memory_ok
    expr: memory.used_memory < 1000000
actions:
  - name: drop_node
    description: Remove a node.
    params:
      type: object
      required: [node_id]
      additionalProperties: false
      properties:
        node_id: {type: string}
    when: nodes.exists(n, n.id == params.node_id)
    http: {target: api, method: DELETE, path: "/v1/nodes/{node_id}"}
prompts:
  system: "You watch {{ subject.name }}."
"""


def write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    (tmp_path / "context.md").write_text("context\n")
    path = tmp_path / name
    path.write_text(text)
    return path


def problems_of(tmp_path: Path, text: str) -> list[tuple[int, int, str, str]]:
    path = write(tmp_path, text)
    problems = validate_paths([path], env={})
    return [(p.line, p.column, ".".join(map(str, p.path)), p.message) for p in problems if p.severity == "error"]


def line_of(text: str, fragment: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if fragment in line)


def test_base_config_is_valid(tmp_path: Path) -> None:
    assert problems_of(tmp_path, BASE) == []
    loaded = load_config(write(tmp_path, BASE), env={})
    assert loaded.config.invariants[0].hold == 10.0


def test_yaml_syntax_error(tmp_path: Path) -> None:
    text = BASE.replace("interval: 5s", "interval: [5s")
    [(line, col, path, message)] = problems_of(tmp_path, text)
    assert (line, path) == (line_of(text, "interval: [5s") + 1, "")
    assert col >= 1
    assert message.startswith("YAML syntax error")


def test_schema_unknown_key(tmp_path: Path) -> None:
    text = BASE.replace("    for: 10s\n", "    for: 10s\n    severty: critical\n")
    assert problems_of(tmp_path, text) == [
        (
            line_of(text, "severty"),
            5,
            "invariants.0.severty",
            "unknown key 'severty'; allowed keys here: name, description, severity, for_each, key, "
            "expr, for, keep_firing_for, resolve_when, on_error, labels, message, runbook, inhibited_by",
        )
    ]


def test_schema_bad_duration_and_enum(tmp_path: Path) -> None:
    text = BASE.replace("for: 10s", "for: 10").replace("    expr: memory.used_memory < 1000000", "    expr: memory.used_memory < 1000000\n    on_error: sometimes")
    assert problems_of(tmp_path, text) == [
        (line_of(text, "for: 10"), 10, "invariants.0.for", "durations are strings with a unit such as 5s, 2m or 1h30m, not 10"),
        (line_of(text, "on_error"), 15, "invariants.1.on_error", "'on_error' must be one of 'keep', 'firing' or 'ok' (got 'sometimes')"),
    ]


def test_schema_missing_key(tmp_path: Path) -> None:
    text = BASE.replace('    expr: item.state == "up"\n', "")
    [(line, col, path, message)] = problems_of(tmp_path, text)
    assert (line, col, path, message) == (line_of(text, "name: node_up"), 5, "invariants.0", "missing required key 'expr'")


def test_cel_syntax_error(tmp_path: Path) -> None:
    text = BASE.replace('expr: item.state == "up"', 'expr: item.state == ')
    [(line, col, path, message)] = problems_of(tmp_path, text)
    assert (line, col, path) == (line_of(text, "expr: item.state =="), 11, "invariants.0.expr")
    assert message.startswith("CEL syntax error in expr of invariant 'node_up' at column 14 of the expression")


def test_cel_unknown_observation(tmp_path: Path) -> None:
    text = BASE.replace("expr: memory.used_memory", "expr: memroy.used_memory")
    assert problems_of(tmp_path, text) == [
        (
            line_of(text, "memroy"),
            11,
            "invariants.1.expr",
            "unknown name 'memroy' in expr of invariant 'memory_ok'; did you mean 'memory'? "
            "names declared here: memory, nodes, now, prev, vars",
        )
    ]


def test_cel_item_outside_for_each(tmp_path: Path) -> None:
    text = BASE.replace("expr: memory.used_memory < 1000000", "expr: item.used_memory < 1000000")
    [problem] = problems_of(tmp_path, text)
    assert problem[2:] == (
        "invariants.1.expr",
        "unknown name 'item' in expr of invariant 'memory_ok'; names declared here: memory, nodes, now, prev, vars",
    )


def test_cel_guard_names(tmp_path: Path) -> None:
    text = BASE.replace("n.id == params.node_id", "n.id == param.node_id")
    [problem] = problems_of(tmp_path, text)
    assert problem == (
        line_of(text, "param.node_id"),
        text.splitlines()[line_of(text, "param.node_id") - 1].index("param.node_id") + 1,  # at the name
        "actions.0.when",
        "unknown name 'param' in the guard of action 'drop_node'; did you mean 'params'? "
        "names declared here: memory, nodes, now, params, prev, vars",
    )


def test_jinja_syntax_error(tmp_path: Path) -> None:
    text = BASE.replace('message: "node {{ item.id }} is {{ item.state }}"', 'message: "node {{ item.id }"')
    [problem] = problems_of(tmp_path, text)
    assert problem[:3] == (line_of(text, "message:"), 14, "invariants.0.message")
    assert problem[3].startswith("jinja2 syntax error in the message of invariant 'node_up': unexpected '}'")


def test_jinja_undeclared_variable(tmp_path: Path) -> None:
    text = BASE.replace("You watch {{ subject.name }}.", "You watch {{ subjekt.name }}.")
    [problem] = problems_of(tmp_path, text)
    assert problem[:3] == (line_of(text, "subjekt"), 11, "prompts.system")
    assert problem[3].startswith("unknown variable 'subjekt' in the system prompt; did you mean 'subject'?")


def test_jinja_in_prompt_file_is_located_in_that_file(tmp_path: Path) -> None:
    (tmp_path / "ticket.j2").write_text("Ticket {{ ticket.id }}\n{% for e in events %}{{ e.kind }\n")
    text = BASE + "  ticket_file: ticket.j2\n"
    [problem] = validate_paths([write(tmp_path, text)], env={})
    assert (Path(problem.file).name, problem.line) == ("ticket.j2", 2)
    assert problem.message.startswith("jinja2 syntax error in the ticket prompt")


def test_action_params_not_json_schema(tmp_path: Path) -> None:
    text = BASE.replace("node_id: {type: string}", "node_id: {type: strin}")
    problems = problems_of(tmp_path, text)
    assert problems[0][:3] == (line_of(text, "      type: object"), 7, "actions.0.params")
    assert problems[0][3].startswith("the params of action 'drop_node' is not a valid JSON Schema: 'strin' is not valid")


def test_runbook_unknown_action(tmp_path: Path) -> None:
    text = BASE.replace("- action: drop_node", "- action: drop_nod")
    assert problems_of(tmp_path, text) == [
        (
            line_of(text, "action: drop_nod"),
            17,
            "invariants.0.runbook.0.action",
            "runbook of invariant 'node_up' names unknown action 'drop_nod'; did you mean 'drop_node'? actions: drop_node",
        )
    ]


def test_runbook_params_rejected_by_schema(tmp_path: Path) -> None:
    text = BASE.replace("params: {node_id: item.id}", "params: {node_id: '42', force: 'true'}")
    problems = problems_of(tmp_path, text)
    line = line_of(text, "force:")
    assert problems == [
        (line, 28, "invariants.0.runbook.0.params.node_id",
         "param 'node_id' gives an int, but action 'drop_node' takes a string for it (its params schema)"),
        (line, 33, "invariants.0.runbook.0.params.force", "action 'drop_node' has no param 'force' (its params: node_id)"),
    ]


def test_runbook_missing_required_param(tmp_path: Path) -> None:
    text = BASE.replace("params: {node_id: item.id}", "params: {}")
    assert problems_of(tmp_path, text) == [
        (line_of(text, "params: {}"), 17, "invariants.0.runbook.0.params",
         "action 'drop_node' requires param 'node_id', which this runbook entry does not give"),
    ]


def test_path_template_undeclared_param(tmp_path: Path) -> None:
    text = BASE.replace('path: "/v1/nodes/{node_id}"', 'path: "/v1/nodes/{node}"')
    assert problems_of(tmp_path, text) == [
        (line_of(text, "{node}"), 47, "actions.0.http.path",
         "'{node}' in action 'drop_node' is not a declared param; did you mean 'node_id'? params: node_id"),
    ]


def test_unknown_target_and_wrong_kind(tmp_path: Path) -> None:
    text = BASE.replace("http: {target: api, path: /v1/nodes}", "http: {target: apj, path: /v1/nodes}").replace(
        "redis: {target: cache,", "redis: {target: api,"
    )
    assert problems_of(tmp_path, text) == [
        (line_of(text, "target: apj"), 20, "observations.nodes.http.target",
         "unknown target 'apj' in http observation 'nodes'; did you mean 'api'? targets: api, cache"),
        (line_of(text, "redis: {target: api"), 21, "observations.memory.redis.target",
         "redis observation 'memory' needs a redis target, but target 'api' is http (http://127.0.0.1:9)"),
    ]


def test_duplicate_names(tmp_path: Path) -> None:
    text = BASE.replace("  - name: memory_ok", "  - name: node_up")
    assert problems_of(tmp_path, text) == [
        (line_of(text, "expr: memory") - 1, 11, "invariants.1.name", "duplicate invariant name 'node_up' (first defined at line 16)"),
    ]


def test_duplicate_keys(tmp_path: Path) -> None:
    text = BASE.replace("interval: 5s", "interval: 5s\ninterval: 6s")
    [problem] = problems_of(tmp_path, text)
    assert problem[0] == line_of(text, "interval: 6s")
    assert problem[3].startswith("duplicate key 'interval'")


def test_referenced_file_missing(tmp_path: Path) -> None:
    text = BASE.replace("context_file: context.md", "context_file: nowhere.md")
    [problem] = problems_of(tmp_path, text)
    assert problem[:3] == (line_of(text, "nowhere.md"), 17, "subject.context_file")
    assert problem[3].startswith("context file 'nowhere.md' does not exist (looked for ")


def test_redis_command_outside_allowlist(tmp_path: Path) -> None:
    text = BASE.replace("command: [INFO, memory]", "command: [FLUSHALL]")
    [problem] = problems_of(tmp_path, text)
    assert problem[:3] == (line_of(text, "FLUSHALL"), 37, "observations.memory.redis.command")
    assert problem[3].startswith("redis command 'FLUSHALL' is not allowed in an observation; observations only read")


def test_unused_observation_is_a_warning(tmp_path: Path) -> None:
    text = BASE.replace("expr: memory.used_memory < 1000000", "expr: now > 0.0")
    path = write(tmp_path, text)
    [problem] = validate_paths([path], env={})
    assert (problem.severity, problem.line, problem.column) == ("warning", line_of(text, "  memory:"), 3)
    assert problem.message == "observation 'memory' is not used by any invariant, guard, template or runbook"
    assert CliRunner().invoke(main, ["validate", str(path)]).exit_code == 0
    assert CliRunner().invoke(main, ["validate", "--warnings-as-errors", str(path)]).exit_code == 1


def test_unset_environment_variable(tmp_path: Path) -> None:
    text = BASE.replace('"http://127.0.0.1:9"', '"${API_URL}"')
    [problem] = problems_of(tmp_path, text)
    assert problem[0] == line_of(text, "API_URL")
    assert "API_URL" in problem[3]


def test_all_problems_reported_in_one_run(tmp_path: Path) -> None:
    text = (
        BASE.replace("command: [INFO, memory]", "command: [FLUSHALL]")
        .replace("expr: memory.used_memory", "expr: memroy.used_memory")
        .replace("    for: 10s\n", "    for: 10s\n    severty: critical\n")
        .replace('path: "/v1/nodes/{node_id}"', 'path: "/v1/nodes/{node}"')
    )
    assert len(problems_of(tmp_path, text)) == 4


def test_load_config_raises_with_every_problem(tmp_path: Path) -> None:
    text = BASE.replace("command: [INFO, memory]", "command: [FLUSHALL]").replace("expr: memory.used", "expr: memroy.used")
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env={})
    assert "FLUSHALL" in str(info.value) and "memroy" in str(info.value)


# ----------------------------------------------------------------------------- the CLI


def test_cli_text_and_exit_codes(tmp_path: Path) -> None:
    runner = CliRunner()
    good = write(tmp_path, BASE, "good.yaml")
    result = runner.invoke(main, ["validate", str(good)])
    assert result.exit_code == 0, result.output
    bad = write(tmp_path, BASE.replace("interval: 5s", "interval: five"), "bad.yaml")
    result = runner.invoke(main, ["validate", str(tmp_path)])
    assert result.exit_code == 1
    line = line_of(BASE, "interval:")
    assert f"{bad}:{line}:11: error: 'interval': durations are strings" not in result.output
    assert f"{bad}:{line}:11: error: five" not in result.output
    assert any(out.startswith(f"{bad}:{line}:11: error: ") and out.endswith("(at interval)") for out in result.output.splitlines())


def test_cli_json_format(tmp_path: Path) -> None:
    bad = write(tmp_path, BASE.replace("expr: memory.used_memory", "expr: memroy.used_memory"))
    result = CliRunner().invoke(main, ["validate", "--format", "json", str(bad)])
    assert result.exit_code == 1
    [entry] = json.loads(result.stdout)
    assert entry == {
        "file": str(bad),
        "line": line_of(BASE, "expr: memory"),
        "column": 11,
        "path": "invariants.1.expr",
        "severity": "error",
        "message": entry["message"],
    }
    assert entry["message"].startswith("unknown name 'memroy'")


def test_cli_missing_path_is_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "absent.yaml")])
    assert result.exit_code == 2
    assert "no such file or directory" in result.output
    assert CliRunner().invoke(main, ["validate"]).exit_code == 2


@pytest.mark.parametrize(
    "content",
    [b"", b"- a\n- b\n", b"\x00\x01\x02binary", b"\xff\xfe\xfa", b"[" * 5000, b"a: " + b"[" * 20000],
    ids=["empty", "list", "binary", "bad-utf8", "deep", "deep-value"],
)
def test_cli_never_a_traceback(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "weird.yaml"
    path.write_bytes(content)
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert result.output.startswith(f"{path}:")


def test_cli_ten_megabyte_file(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("version: 1\n" + "# padding\n" * 1_100_000)
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output


REVERTED = BASE.replace(
    '    http: {target: api, method: DELETE, path: "/v1/nodes/{node_id}"}\n',
    '    http: {target: api, method: DELETE, path: "/v1/nodes/{node_id}"}\n'
    "    verify: {within: 1m, expr: '!nodes.exists(n, n.id == params.node_id)'}\n"
    "    revert: {action: add_node, params: {node_id: params.node_id}, when: 'now > 0.0'}\n"
    "  - name: add_node\n"
    "    description: Put a node back.\n"
    "    params: {type: object, required: [node_id], additionalProperties: false, properties: {node_id: {type: string}}}\n"
    '    http: {target: api, method: PUT, path: "/v1/nodes/{node_id}"}\n',
)


def test_a_revert_and_an_effect_check_are_valid(tmp_path: Path) -> None:
    assert problems_of(tmp_path, REVERTED) == []
    drop = load_config(write(tmp_path, REVERTED), env={}).config.action("drop_node")
    assert drop is not None and drop.revert is not None and drop.verify.expr is not None
    assert (drop.revert.action, drop.revert.params, drop.revert.when) == ("add_node", {"node_id": "params.node_id"}, "now > 0.0")


@pytest.mark.parametrize(
    ("old", "new", "fragment", "path", "message"),
    [
        ("revert: {action: add_node,", "revert: {action: add_nod,", "add_nod,", "actions.0.revert.action",
         "the revert of action 'drop_node' names unknown action 'add_nod'; did you mean 'add_node'? actions: add_node, drop_node"),
        ("revert: {action: add_node,", "revert: {action: drop_node,", "revert:", "actions.0.revert.action",
         "action 'drop_node' cannot revert itself; name the action that undoes it"),
        ("params: {node_id: params.node_id}", "params: {node_id: params.node_id, force: 'true'}", "force:", "actions.0.revert.params.force",
         "action 'add_node' has no param 'force' (its params: node_id)"),
        ("params: {node_id: params.node_id}", "params: {}", "revert:", "actions.0.revert.params",
         "action 'add_node' requires param 'node_id', which this revert does not give"),
        ("when: 'now > 0.0'", "when: 'item.id == params.node_id'", "revert:", "actions.0.revert.when",
         "unknown name 'item' in the `when` of the revert of action 'drop_node'; names declared here: memory, nodes, now, params, vars"),
        ("expr: '!nodes.exists(n, n.id == params.node_id)'", "expr: 'prev.nodes == nodes'", "verify:", "actions.0.verify.expr",
         "unknown name 'prev' in the effect check (verify.expr) of action 'drop_node'; names declared here: memory, nodes, now, params, vars"),
    ],
)  # fmt: skip
def test_revert_and_effect_check_problems_are_located(tmp_path: Path, old: str, new: str, fragment: str, path: str, message: str) -> None:
    text = REVERTED.replace(old, new)
    [(line, _, where, found)] = problems_of(tmp_path, text)
    assert (line, where, found) == (line_of(text, fragment), path, message)


def test_reverts_do_not_chain(tmp_path: Path) -> None:
    text = REVERTED.replace(
        '    http: {target: api, method: PUT, path: "/v1/nodes/{node_id}"}\n',
        '    http: {target: api, method: PUT, path: "/v1/nodes/{node_id}"}\n'
        "    revert: {action: drop_node, params: {node_id: params.node_id}}\n",
    )
    messages = [m for _, _, _, m in problems_of(tmp_path, text)]
    assert "the revert of action 'drop_node' is action 'add_node', which declares a revert itself; reverts do not chain" in messages


def test_a_lease_no_longer_than_a_tick_is_refused_at_its_place(tmp_path: Path) -> None:
    assert problems_of(tmp_path, BASE + "lease: {ttl: 11s}\n") == []
    text = BASE + "lease:\n  ttl: 5s\n"
    [(line, _, path, message)] = problems_of(tmp_path, text)
    assert (line, path) == (line_of(text, "ttl: 5s"), "lease.ttl")
    assert "lease.ttl (5s) must be longer than interval (5s)" in message and "expire between renewals" in message
