"""Typed expressions: the mistakes that used to validate and then switch an invariant off in
silence are errors at `opctl validate`, each at the exact line and column inside the expression.

Each test edits a copy of a shipped config (configs/ with the subjects/ it refers to) and checks
the whole list of problems.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli import main
from engine.documents import validate_paths

ROOT = Path(__file__).resolve().parents[2]


def copy_of(tmp_path: Path, name: str) -> Path:
    shutil.copy(ROOT / ".opctl-root", tmp_path)  # configs/ names ../subjects/: one project root
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    shutil.copytree(ROOT / "subjects", tmp_path / "subjects")
    shutil.copytree(ROOT / "compose", tmp_path / "compose")  # the TiKV lab's Prometheus config
    return tmp_path / "configs" / f"{name}.yaml"


def edited(tmp_path: Path, name: str, old: str, new: str) -> tuple[Path, str]:
    config = copy_of(tmp_path, name)
    text = config.read_text()
    assert text.count(old) >= 1, old
    text = text.replace(old, new, 1)
    config.write_text(text)
    return config, text


def at(text: str, line_snippet: str, token: str) -> tuple[int, int]:
    """1-based (line, column) of `token` in the first line containing `line_snippet`, at or after it."""
    for number, line in enumerate(text.splitlines(), start=1):
        if line_snippet in line:
            return number, line.index(token, line.index(line_snippet)) + 1
    raise AssertionError(f"{line_snippet!r} not in the text")


def problems(config: Path, *, strict: bool = False, env: dict[str, str] | None = None) -> list[tuple[int, int, str, str]]:
    return [(p.line, p.column, ".".join(map(str, p.path)), p.message)
            for p in validate_paths([config], env or {}, strict=strict) if p.severity == "error"]


# ------------------------------------------------------------------------- the five mistakes

RATELIMITER_FIELDS = "address, decisions, failure_mode_decisions, id, policy_version, state"
TIKV_STORE_FIELDS = "address, id, peer_address, state_name, status_address, version"

FIVE = {
    "ratelimiter": [
        ('expr: item.state == "up"', 'expr: item.stat == "up"', "stat",
         "invariants.0.expr",
         "expr of invariant 'node_heartbeat': unknown field 'stat' of item; did you mean 'state'? "
         f"(fields of item in its shape: {RATELIMITER_FIELDS})"),
        ('expr: item.state == "up"', 'expr: item.decisions > "0"', ">",
         "invariants.0.expr",
         "expr of invariant 'node_heartbeat': > is not defined for (int, string): item.decisions > \"0\"; "
         "CEL does not convert between strings and numbers: compare with a number (no quotes) or convert with int(...)"),
        ('expr: item.state == "up"', "expr: item.state == 1", "==",
         "invariants.0.expr",
         "expr of invariant 'node_heartbeat': item.state == 1 compares a string enum (\"up\" | \"stale\" | \"down\") "
         "with an int: they are never equal"),
        ('expr: item.state == "up"', "expr: item.state", "item.state",
         "invariants.0.expr",
         "expr of invariant 'node_heartbeat' gives a string enum (\"up\" | \"stale\" | \"down\"), not a bool: "
         "an invariant is an expression that is true when healthy"),
        ("params: {node_id: item.id}", "params: {node_id: item.idd}", "idd",
         "invariants.0.runbook.0.params.node_id",
         "param 'node_id' of a runbook entry of invariant 'node_heartbeat': unknown field 'idd' of item; "
         f"did you mean 'id'? (fields of item in its shape: {RATELIMITER_FIELDS})"),
    ],
    "tikv": [
        ('expr: item.store.state_name == "Up"', 'expr: item.store.state_nam == "Up"', "state_nam",
         "invariants.0.expr",
         "expr of invariant 'store_up': unknown field 'state_nam' of item.store; did you mean 'state_name'? "
         f"(fields of item.store in its shape: {TIKV_STORE_FIELDS})"),
        ('expr: item.store.state_name == "Up"', 'expr: item.status.leader_count > "0"', ">",
         "invariants.0.expr",
         "expr of invariant 'store_up': > is not defined for (int, string): item.status.leader_count > \"0\"; "
         "CEL does not convert between strings and numbers: compare with a number (no quotes) or convert with int(...)"),
        ('expr: item.store.state_name == "Up"', 'expr: item.store.state_name == "up"', '"up"',
         "invariants.0.expr",
         "expr of invariant 'store_up': \"up\" is not one of the values of item.store.state_name "
         "(\"Up\", \"Disconnected\", \"Down\", \"Offline\", \"Tombstone\"): the comparison is always false"),
        ('expr: item.store.state_name == "Up"', "expr: item.store.state_name", "item.store",
         "invariants.0.expr",
         "expr of invariant 'store_up' gives a string enum (\"Up\" | \"Disconnected\" | \"Down\" | \"Offline\" | "
         "\"Tombstone\"), not a bool: an invariant is an expression that is true when healthy"),
        ("params: {store_id: item.store.id}", "params: {store_id: item.store.idd}", "idd",
         "invariants.0.runbook.0.params.store_id",
         "param 'store_id' of a runbook entry of invariant 'store_up': unknown field 'idd' of item.store; "
         f"did you mean 'id'? (fields of item.store in its shape: {TIKV_STORE_FIELDS})"),
    ],
}


@pytest.mark.parametrize(("name", "old", "new", "token", "path", "message"),
                         [(name, *case) for name, cases in FIVE.items() for case in cases],
                         ids=[f"{name}-{case[2]}" for name, cases in FIVE.items() for case in cases])
def test_the_five_mistakes_on_each_shipped_config(tmp_path: Path, name: str, old: str, new: str, token: str,
                                                   path: str, message: str) -> None:
    config, text = edited(tmp_path, name, old, new)
    line, column = at(text, new, token)
    assert problems(config) == [(line, column, path, message)]


def test_a_runbook_param_of_the_wrong_type(tmp_path: Path) -> None:
    config, text = edited(tmp_path, "tikv", "params: {store_id: item.store.id}", "params: {store_id: item.store.address}")
    line, column = at(text, "store_id: item.store.address", "item.store.address")
    assert problems(config) == [(line, column, "invariants.0.runbook.0.params.store_id",
                                 "param 'store_id' gives a string, but action 'add_evict_leader' takes an integer "
                                 "for it (its params schema)")]


# ------------------------------------------------------------------------- vars and ${...}


def test_environment_text_inside_an_expression_is_refused(tmp_path: Path) -> None:
    config, text = edited(tmp_path, "ratelimiter", "expr: item.used <= item.limit",
                          "expr: item.used <= ${MAX_USED:-100}")
    line, column = at(text, "expr: item.used <= ${MAX_USED", "${")
    assert problems(config, env={"MAX_USED": "1 || true"}) == [(
        line, column, "invariants.4.expr",
        "${MAX_USED:-100} in expr of invariant 'no_over_admission': the environment must never rewrite an "
        "expression; declare a typed variable under `vars:` (e.g. vars: {limit: {type: int, value: "
        "\"${MAX_USED:-100}\"}}) and read vars.limit in the expression")]


VARS = """\
vars:
  max_used: {type: int, value: "${MAX_USED:-100}", description: Most a key may use.}
  grace: {type: duration, value: 90s}
"""


def test_typed_vars_are_read_by_expressions(tmp_path: Path) -> None:
    config, _ = edited(tmp_path, "ratelimiter", "interval: 2s\n", "interval: 2s\n" + VARS)
    config.write_text(config.read_text().replace("expr: item.used <= item.limit",
                                                 "expr: item.used <= vars.max_used && now - vars.grace > 0.0"))
    assert problems(config, env={"MAX_USED": "120"}) == []
    from engine.config.validate import load_config

    assert load_config(config, env={"MAX_USED": "120"}).config.variable_values() == {"max_used": 120, "grace": 90.0}


def test_a_var_that_does_not_parse_names_its_environment_variable(tmp_path: Path) -> None:
    config, text = edited(tmp_path, "ratelimiter", "interval: 2s\n", "interval: 2s\n" + VARS)
    line, column = at(text, "max_used:", '"${MAX_USED')
    assert problems(config, env={"MAX_USED": "abc"}) == [(
        line, column, "vars.max_used.value",
        "vars.max_used: MAX_USED='abc' is not an int (the value comes from ${MAX_USED:-100})")]


def test_a_var_of_the_wrong_type_in_an_expression(tmp_path: Path) -> None:
    config, text = edited(tmp_path, "ratelimiter", "interval: 2s\n", "interval: 2s\n" + VARS)
    text = text.replace("expr: item.used <= item.limit", 'expr: item.used <= vars.max_used + "1"')
    config.write_text(text)
    line, column = at(text, 'vars.max_used + "1"', "+")
    assert problems(config) == [(line, column, "invariants.4.expr",
                                 "expr of invariant 'no_over_admission': + is not defined for (int, string): "
                                 "vars.max_used + \"1\"; CEL does not convert between strings and numbers: compare "
                                 "with a number (no quotes) or convert with int(...)")]


# ------------------------------------------------------------------------- guards, params, strict


def test_a_guard_that_reads_item(tmp_path: Path) -> None:
    old = "when: registry.exists(n, n.id == params.node_id && n.state == \"down\")"
    config, text = edited(tmp_path, "ratelimiter", old, "when: item.state == \"down\"")
    line, column = at(text, "when: item.state", "item")
    assert problems(config) == [(
        line, column, "actions.0.when",
        "unknown name 'item' in the guard of action 'deregister_node'; guards see `params` and the observations "
        "(with `now`, `prev`, `vars`), not `item`: give the action a param for what the guard needs")]


def test_a_word_written_without_quotes_as_a_runbook_param(tmp_path: Path) -> None:
    config, text = edited(tmp_path, "ratelimiter", "params: {policy: item.policy, key: item.key}",
                          "params: {policy: api, key: item.key}")
    line, column = at(text, "params: {policy: api", "api")
    assert problems(config) == [(
        line, column, "invariants.4.runbook.0.params.policy",
        "unknown name 'api' in param 'policy' of a runbook entry of invariant 'no_over_admission'; to pass the "
        "text 'api', quote it: \"'api'\" (a param is a CEL expression)")]


def test_an_unknown_function_with_did_you_mean(tmp_path: Path) -> None:
    config, text = edited(tmp_path, "ratelimiter", "key: item.policy + \"/\" + item.key",
                          "key: item.policy.lowercase() + \"/\" + item.key")
    line, column = at(text, "key: item.policy.lowercase()", "lowercase")
    assert problems(config) == [(line, column, "invariants.4.key",
                                 "key of invariant 'no_over_admission': unknown function 'lowercase'; did you mean 'lowerAscii'?")]


def test_strict_needs_a_shape_for_an_observation_an_expression_reads(tmp_path: Path) -> None:
    config = copy_of(tmp_path, "ratelimiter")
    text = config.read_text()
    start = text.index("  redis_stats:\n")
    end = text.index("invariants:")
    text = text[:start] + "  redis_stats:\n    redis: {target: redis, command: [INFO, stats]}\n\n" + text[end:]
    config.write_text(text)
    assert problems(config) == []  # untyped: the checker says nothing false
    line, column = at(text, "  redis_stats:", "redis_stats")
    assert problems(config, strict=True) == [(
        line, column, "observations.redis_stats",
        "--strict: observation 'redis_stats' has no `shape` and its source does not type it, so expressions over "
        "it (first: expr of invariant 'redis_memory_headroom') are not type-checked; add a `shape`: the JSON "
        "Schema of its value")]
    result = CliRunner().invoke(main, ["validate", "--strict", str(config)])
    assert result.exit_code == 1 and "--strict: observation 'redis_stats'" in result.output


def test_every_shipped_config_passes_strict() -> None:
    result = CliRunner().invoke(main, ["validate", "--strict", str(ROOT / "configs"), str(ROOT / "subjects")])
    assert result.exit_code == 0, result.output


# ------------------------------------------------------------------------- the checker alone

NODES = {"type": "array", "items": {"type": "object", "required": ["id", "cpu"],
                                    "properties": {"id": {"type": "string"}, "cpu": {"type": "number"},
                                                   "up": {"type": "boolean"}}}}


@pytest.mark.parametrize(("source", "offset", "message"), [
    ('nodes.any(n, n.id == "a")', 6, "there is no macro or method 'any' (macros: all, exists, exists_one, filter, map)"),
    ("math.greatst(1, 2)", 0, "unknown function 'math.greatst'; did you mean 'math.greatest'?"),
    ('"a" in nodes[0].id', 4, '`in` tests list elements and map keys, but nodes[0].id is a string: write nodes[0].id.contains("a")'),
    ("size(nodes[0].up) > 0", 5, "size() is defined for strings, bytes, lists and maps, but nodes[0].up is a bool"),
    ('{"a": 1, "a": 2}.a == 1', 9, 'duplicate key "a" in a map literal'),
    ("nodes.exists(n, n.cpu)", 16, "the predicate of exists() must be a bool, but n.cpu is an int | double"),
    ("nodes[0].up ? 1 : 2.5", -1, ""),  # a union result is fine
    ("nodes.map(n, n.cpu * 2.0).exists(c, c > 0.5)", -1, ""),  # number = int | double: silent
    ("nodes.size() + 1.0 > 2.0", 13, "+ is not defined for (int, double): nodes.size() + 1.0; CEL does not mix int "
                                     "and double in arithmetic: convert one side with double(...)"),
])
def test_checker_problems(source: str, offset: int, message: str) -> None:
    from engine.config.celtypes import from_schema
    from engine.config.typecheck import Scope, check, library_problems

    checked = check(source, Scope({"nodes": from_schema(NODES)}))
    assert checked is not None
    found = [(p.start, p.message) for p in checked.problems] or [
        (p.start, p.message) for p in library_problems(source, frozenset({"nodes"}))]
    assert found == ([] if offset < 0 else [(offset, message)])


def test_library_checker_finds_functions_the_walk_leaves_alone() -> None:
    from engine.config.typecheck import TypeProblem, library_problems

    assert library_problems("lowerAscii(x)", frozenset({"x"})) == [
        TypeProblem(0, "'lowerAscii' is a method: call it on a value, e.g. x.lowerAscii(...)")]
    assert library_problems("x.lowerAscii() + y", frozenset({"x", "y"})) == []
    assert library_problems("x ? 1 : 2.5", frozenset({"x"})) == []  # runs: the library's typing is stricter
