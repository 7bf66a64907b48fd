"""Bad incident and muting config: an `inhibited_by` naming an unknown invariant or its own, an
inhibition cycle, a `group_by` that is no ticket field, a declared `target_up`: exit 1 at
file:line:col, for `opctl validate` and `opctl run` alike."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from engine.cli import main
from engine.documents import validate_paths
from tests.config.test_validate import BASE, line_of, problems_of, write


def with_inhibitions(node_up: str, memory_ok: str | None = None) -> str:
    text = BASE.replace("    for: 10s\n", f"    for: 10s\n    inhibited_by: {node_up}\n", 1)
    if memory_ok is not None:
        text = text.replace("  - name: memory_ok\n", f"  - name: memory_ok\n    inhibited_by: {memory_ok}\n", 1)
    return text


def test_declared_inhibitions_and_target_up_are_valid(tmp_path: Path) -> None:
    assert problems_of(tmp_path, with_inhibitions("[memory_ok, target_up]")) == []


def test_inhibited_by_an_unknown_invariant_is_located_with_a_hint(tmp_path: Path) -> None:
    text = with_inhibitions("[memory_okk]")
    [(line, col, path, message)] = problems_of(tmp_path, text)
    assert (line, path) == (line_of(text, "inhibited_by: [memory_okk]"), "invariants.0.inhibited_by.0")
    assert col == text.splitlines()[line - 1].index("memory_okk") + 1
    assert "unknown invariant 'memory_okk'" in message and "did you mean 'memory_ok'?" in message


def test_an_invariant_cannot_inhibit_itself(tmp_path: Path) -> None:
    [(_, _, path, message)] = problems_of(tmp_path, with_inhibitions("[node_up]"))
    assert path == "invariants.0.inhibited_by.0" and "cannot inhibit itself" in message


def test_an_inhibition_cycle_is_refused_once_at_its_first_edge(tmp_path: Path) -> None:
    text = with_inhibitions("[memory_ok]", memory_ok="[node_up]")
    [(line, _, path, message)] = problems_of(tmp_path, text)
    assert "inhibition cycle: memory_ok -> node_up -> memory_ok" in message
    assert path == "invariants.1.inhibited_by.0" and line == line_of(text, "inhibited_by: [node_up]")


def test_group_by_must_name_a_ticket_field(tmp_path: Path) -> None:
    text = BASE + "incidents:\n  group_by: [invariant, labels.team, colour]\n"
    [(line, _, path, message)] = problems_of(tmp_path, text)
    assert path == "incidents.group_by.2" and line == line_of(text, "group_by:")
    assert "group_by 'colour' is not a ticket field" in message


def test_target_up_is_built_in(tmp_path: Path) -> None:
    text = BASE.replace("  - name: memory_ok\n", "  - name: target_up\n", 1)
    [(_, _, path, message)] = problems_of(tmp_path, text)
    assert path == "invariants.1.name" and "built-in invariant" in message


def with_target_field(target: str, field: str, text: str = BASE) -> str:
    """BASE with one more field (YAML lines, indented under the target) on target `api` or `cache`."""
    url = {"api": "http://127.0.0.1:9", "cache": "redis://127.0.0.1:9/0"}[target]
    return text.replace(f'  {target}: {{url: "{url}"}}\n', f'  {target}:\n    url: "{url}"\n    {field}\n', 1)


def target_with_runbook(entry: str) -> str:
    return with_target_field("api", f"runbook:\n      - {entry}")


def test_a_target_runbook_is_checked_like_an_invariant_runbook_over_target_ups_entity(tmp_path: Path) -> None:
    assert problems_of(tmp_path, target_with_runbook("{action: drop_node, params: {node_id: key}}")) == []
    assert problems_of(tmp_path, target_with_runbook("{action: drop_node, params: {node_id: item.target}}")) == []
    text = target_with_runbook("{action: drop_nod, params: {node_id: key}}")
    [(line, _, path, message)] = problems_of(tmp_path, text)
    assert path == "targets.api.runbook.0.action" and line == line_of(text, "action: drop_nod")
    assert "runbook of target_up of target 'api' names unknown action 'drop_nod'" in message and "did you mean 'drop_node'?" in message
    # target_up's entity has fields; a typo or a wrong type is found where it is written
    [(_, _, path, message)] = problems_of(tmp_path, target_with_runbook("{action: drop_node, params: {node_id: item.targt}}"))
    assert path == "targets.api.runbook.0.params.node_id" and "targt" in message
    [(_, _, path, message)] = problems_of(tmp_path, target_with_runbook("{action: drop_node, params: {node_id: item.up}}"))
    assert path == "targets.api.runbook.0.params.node_id" and "gives a bool" in message and "takes a string" in message


def test_a_runbook_on_a_target_no_observation_reads_is_a_warning(tmp_path: Path) -> None:
    text = target_with_runbook("{action: drop_node, params: {node_id: key}}").replace(
        "  cache: {url: \"redis://127.0.0.1:9/0\"}\n", "  cache: {url: \"redis://127.0.0.1:9/0\"}\n  spare:\n    url: \"http://127.0.0.1:9\"\n"
        "    runbook: [{action: drop_node, params: {node_id: key}}]\n", 1)
    assert problems_of(tmp_path, text) == []
    warnings = [p for p in validate_paths([write(tmp_path, text)], env={}) if p.severity == "warning"]
    assert [(".".join(map(str, p.path)), p.line) for p in warnings if "runbook" in p.message] == [
        ("targets.spare.runbook", line_of(text, "runbook: [{action: drop_node"))]
    assert "no observation reads it, so its target_up never fires" in warnings[0].message


def test_run_and_validate_exit_1_with_the_place(tmp_path: Path) -> None:
    path = write(tmp_path, with_inhibitions("[memory_ok]", memory_ok="[node_up]"))
    for command in (["validate", str(path)], ["run", str(path), "--once"]):
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 1, result.output
        assert f"{path}:" in result.output and "inhibition cycle" in result.output
        assert "Traceback" not in result.output


NOTIFY = """notify:
  - name: oncall
    alertmanager: {url: "http://127.0.0.1:9093"}
  - name: chatops
    webhook: {url: "${HOOK_URL:-http://127.0.0.1:9/hook}", secret: "${HOOK_SECRET:-s}", format: json}
    events: [opened, resolved, approval_needed, executed, escalated, kill_switch]
"""


def test_the_issue_notify_block_is_valid(tmp_path: Path) -> None:
    assert problems_of(tmp_path, BASE + NOTIFY) == []


def test_notify_with_both_or_neither_receiver_is_located(tmp_path: Path) -> None:
    both = BASE + NOTIFY.replace('    alertmanager: {url: "http://127.0.0.1:9093"}\n',
                                 '    alertmanager: {url: "http://127.0.0.1:9093"}\n    webhook: {url: "http://127.0.0.1:9/x"}\n')
    [(line, _, path, message)] = problems_of(tmp_path, both)
    assert path.startswith("notify.0") and "exactly one of `alertmanager` or `webhook`" in message
    assert line == line_of(both, "- name: oncall")
    neither = BASE + "notify:\n  - name: oncall\n"
    [(_, _, path, message)] = problems_of(tmp_path, neither)
    assert path.startswith("notify.0") and "exactly one of `alertmanager` or `webhook`" in message


def test_an_unknown_event_name_is_located(tmp_path: Path) -> None:
    text = BASE + NOTIFY.replace("kill_switch]", "kill_switch, paged]")
    [(line, _, path, message)] = problems_of(tmp_path, text)
    assert path == "notify.1.events.6" and line == line_of(text, "paged]") and "paged" in message


def test_an_invalid_url_is_located_without_printing_an_environment_value(tmp_path: Path) -> None:
    text = BASE + NOTIFY.replace('"http://127.0.0.1:9093"', '"127.0.0.1:9093"')
    [(line, _, path, message)] = problems_of(tmp_path, text)
    assert path == "notify.0.alertmanager.url" and line == line_of(text, "127.0.0.1:9093")
    assert "'127.0.0.1:9093' is not an http(s)://host" in message
    path_ = write(tmp_path, BASE + NOTIFY.replace("${HOOK_URL:-http://127.0.0.1:9/hook}", "${HOOK_URL}"))
    result = CliRunner(env={"HOOK_URL": "hooks.example/T0KEN-123"}).invoke(main, ["validate", str(path_)])
    assert result.exit_code == 1 and "from ${HOOK_URL}" in result.output and "T0KEN-123" not in result.output


def target_inhibited_by(target: str, names: str, text: str = BASE) -> str:
    return with_target_field(target, f"inhibited_by: {names}", text)


def test_a_targets_inhibited_by_names_declared_invariants_only(tmp_path: Path) -> None:
    assert problems_of(tmp_path, target_inhibited_by("cache", "[node_up]")) == []
    text = target_inhibited_by("cache", "[node_upp]")
    [(line, _, path, message)] = problems_of(tmp_path, text)
    assert (path, line) == ("targets.cache.inhibited_by.0", line_of(text, "inhibited_by: [node_upp]"))
    assert "target 'cache' is inhibited_by unknown invariant 'node_upp'" in message and "did you mean 'node_up'?" in message
    [(_, _, path, message)] = problems_of(tmp_path, target_inhibited_by("cache", "[target_up]"))
    assert path == "targets.cache.inhibited_by.0" and "cannot be inhibited_by target_up" in message


def test_an_inhibition_cycle_through_a_targets_health_is_refused_and_other_targets_are_not_a_cycle(tmp_path: Path) -> None:
    # node_up reads api: muted by api's target_up, which node_up would mute in turn
    text = target_inhibited_by("api", "[node_up]", with_inhibitions("[target_up]"))
    [(line, _, path, message)] = problems_of(tmp_path, text)
    assert "inhibition cycle: node_up -> target_up[api] -> node_up" in message
    assert path == "invariants.0.inhibited_by.0" and line == line_of(text, "inhibited_by: [target_up]")
    # node_up does not read cache: cache's target_up never mutes it, so this is no cycle
    assert problems_of(tmp_path, target_inhibited_by("cache", "[node_up]", with_inhibitions("[target_up]"))) == []
