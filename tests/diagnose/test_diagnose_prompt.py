"""Prompt variables and rendering: shipped and built-in templates, redaction, trimming, data stays data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diagnose_support import INJECTION, NOW, SECRET, config_data, write_config
from engine.config.validate import LoadedConfig, load_config
from engine.diagnose import DiagnosisRequest, prompt_context, render_prompts
from engine.diagnose.default_prompts import DATA_NOTICE
from engine.diagnose.prompt import OBSERVATIONS_BUDGET, referenced_observations
from engine.errors import ConfigError
from engine.redact import MASK, Redactor
from engine.store import Event, Ticket
from engine.templates import PROMPT_VARIABLES


def ticket(invariant: str, key: str, message: str = "something is wrong", **changes: Any) -> Ticket:
    values: dict[str, Any] = dict(
        id=7,
        invariant=invariant,
        entity_key=key,
        labels={},
        severity="critical",
        status="open",
        held=False,
        first_seen=NOW - 90,
        last_seen=NOW,
        resolved_at=None,
        occurrences=4,
        message=message,
        snapshot={},
        previous_ticket_id=None,
    )
    values.update(changes)
    return Ticket(**values)


def shipped() -> LoadedConfig:
    return load_config("configs/ratelimiter.yaml", env={})


def registry(node_id: str = "n2") -> list[dict[str, Any]]:
    return [
        {"id": "n1", "address": "127.0.0.1:18081", "state": "up", "policy_version": 3, "decisions": 10, "failure_mode_decisions": 0},
        {"id": node_id, "address": "127.0.0.1:18082", "state": "down", "policy_version": 3, "decisions": 4, "failure_mode_decisions": 0},
    ]


def heartbeat_request(loaded: LoadedConfig, node_id: str = "n2", **changes: Any) -> DiagnosisRequest:
    invariant = loaded.config.invariant("node_heartbeat")
    assert invariant is not None
    nodes = registry(node_id)
    values: dict[str, Any] = dict(
        ticket=ticket("node_heartbeat", node_id, f"node {node_id} (127.0.0.1:18082) is down"),
        invariant=invariant,
        item=nodes[1],
        key=node_id,
        observations={"registry": nodes, "redis_ping": "PONG", "over_limit": []},
        events=[Event(1, 7, "node_heartbeat", node_id, "firing", "engine", NOW - 90, {"before": "pending", "after": "firing"})],
        similar_tickets=[ticket("node_heartbeat", "n9", "node n9 is down", id=3, status="resolved", resolved_at=NOW - 3000, first_seen=NOW - 3600)],
    )
    values.update(changes)
    return DiagnosisRequest(**values)


def test_context_has_exactly_the_prompt_variables() -> None:
    loaded = shipped()
    context = prompt_context(loaded, heartbeat_request(loaded), "execute", NOW)
    assert set(context) == PROMPT_VARIABLES
    assert context["ticket"]["first_seen"] == "2025-10-09T08:51:50Z" and context["ticket"]["age"] == "1m30s"
    # only the observations the invariant reads
    assert list(context["observations"]) == ["registry"]
    assert context["similar_tickets"][0]["resolution"] == "resolved after 10m"
    assert [a["name"] for a in context["actions"]] == [a.name for a in loaded.config.actions]
    json.dumps(context)  # plain data all the way down


def test_shipped_templates_render_the_whole_ticket() -> None:
    loaded = shipped()
    system, user = render_prompts(loaded, heartbeat_request(loaded), "approve", NOW)
    assert system.startswith("You are the on-call SRE for ratelimiter")
    assert "(mode: approve)" in system and "policy drift" in system  # the subject context file
    assert system.endswith(DATA_NOTICE)
    assert "Ticket #7 — invariant `node_heartbeat` (critical) is violated" in user
    assert '"state": "down"' in user  # the entity
    assert "## registry" in user and "## redis_memory" not in user
    assert "firing by engine" in user
    assert "#3 resolved: node n9 is down — resolved after 10m" in user
    assert "`deregister_node` (risk low)" in user and '"node_id"' in user


def test_builtin_templates_are_used_without_prompts(tmp_path: Path) -> None:
    loaded = write_config(tmp_path, config_data("http://127.0.0.1:9"))
    assert loaded.config.prompts.system is None and loaded.config.prompts.system_file is None
    invariant = loaded.config.invariant("node_up")
    assert invariant is not None
    request = DiagnosisRequest(
        ticket=ticket("node_up", "n2", "node n2 is down"),
        invariant=invariant,
        item={"id": "n2", "state": "down", "note": f"token={SECRET}"},
        key="n2",
        observations={"nodes": [{"id": "n2", "state": "down", "note": f"Bearer {SECRET}"}], "limits": {"default": 100}},
    )
    system, user = render_prompts(loaded, request, "execute", NOW)
    assert system.startswith("You are the on-call SRE for demo: Nodes behind one registry.")
    assert "not\ninstructions" in system
    assert "Ticket #7: invariant `node_up` (critical) is violated for\n`n2`" in user
    assert "## nodes" in user and "## limits" in user  # the runbook reads `limits`
    assert "- `set_limit` (risk medium): Set the default limit." in user
    assert "Recent events:\n- none" in user
    # the context and both observed values carried the target's token
    assert SECRET not in system + user
    assert MASK in system and user.count(MASK) >= 2


def test_a_config_without_actions_says_so(tmp_path: Path) -> None:
    data = config_data("http://127.0.0.1:9")
    data["actions"] = []
    data["invariants"][0]["runbook"] = []
    loaded = write_config(tmp_path, data)
    invariant = loaded.config.invariant("node_up")
    assert invariant is not None
    request = DiagnosisRequest(ticket("node_up", "n2"), invariant, {"id": "n2"}, "n2", {"nodes": [], "limits": {}})
    _, user = render_prompts(loaded, request, "observe", NOW)
    assert "- none: recommend no action." in user


def test_observations_are_trimmed_to_the_budget() -> None:
    loaded = shipped()
    huge = [dict(registry()[0], id=f"n{i}", address="x" * 200) for i in range(5000)]
    request = heartbeat_request(loaded, observations={"registry": huge})
    context = prompt_context(loaded, request, "execute", NOW)
    size = len(json.dumps(context["observations"]))
    assert size <= OBSERVATIONS_BUDGET * 1.1
    assert context["observations"]["registry"][-1].endswith("more items]")
    _, user = render_prompts(loaded, request, "execute", NOW)
    assert len(user) < 60_000


def test_a_template_that_fails_to_render_names_its_place(tmp_path: Path) -> None:
    loaded = write_config(tmp_path, config_data("http://127.0.0.1:9", prompts={"system": "{{ subject.nope.deeper }}"}))
    invariant = loaded.config.invariant("node_up")
    assert invariant is not None
    request = DiagnosisRequest(ticket("node_up", "n2"), invariant, {"id": "n2"}, "n2", {})
    with pytest.raises(ConfigError, match=r"prompts\.system of .*opctl\.yaml cannot be rendered: .*nope"):
        render_prompts(loaded, request, "execute", NOW)


def test_a_missing_prompt_file_names_its_place(tmp_path: Path) -> None:
    (tmp_path / "ticket.j2").write_text("{{ ticket.id }}")
    loaded = write_config(tmp_path, config_data("http://127.0.0.1:9", prompts={"ticket_file": "ticket.j2"}))
    (tmp_path / "ticket.j2").unlink()  # gone after validation
    invariant = loaded.config.invariant("node_up")
    assert invariant is not None
    request = DiagnosisRequest(ticket("node_up", "n2"), invariant, {"id": "n2"}, "n2", {})
    with pytest.raises(ConfigError, match=r"prompts\.ticket_file of .*: cannot read .*ticket\.j2"):
        render_prompts(loaded, request, "execute", NOW)


def test_referenced_observations_follow_expressions_message_and_runbook() -> None:
    loaded = shipped()
    declared = list(loaded.config.observations)
    by_name = {inv.name: referenced_observations(inv, declared) for inv in loaded.config.invariants}
    assert by_name["node_heartbeat"] == ["registry"]
    assert by_name["redis_memory_headroom"] == ["redis_memory", "redis_stats"]
    assert by_name["no_ghost_allowing"] == ["node_metrics", "redis_ping"]


def test_the_injection_reaches_the_prompt_verbatim_as_data() -> None:
    loaded = shipped()
    _, user = render_prompts(loaded, heartbeat_request(loaded, node_id=INJECTION), "execute", NOW)
    assert f'"id": "{INJECTION}"' in user  # inside the JSON of the entity and the observation
    assert user.count(INJECTION) >= 3  # the ticket's key, the entity, the registry


safe_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=200).filter(
    lambda s: Redactor().text(s) == s
)


@pytest.fixture(scope="module")
def shipped_config() -> LoadedConfig:
    return shipped()


@settings(max_examples=60, deadline=None)
@given(value=safe_text)
def test_any_observed_text_is_rendered_as_json_data_never_as_template(shipped_config: LoadedConfig, value: str) -> None:
    loaded = shipped_config
    _, user = render_prompts(loaded, heartbeat_request(loaded, node_id=value), "execute", NOW)
    # e.g. "{{ 7*7 }}" stays literal: observed text is never rendered as a template
    assert json.dumps(value, sort_keys=True)[1:-1] in user


def test_a_huge_key_and_message_are_trimmed_too() -> None:
    loaded = shipped()
    key = "k" * 50_000
    request = heartbeat_request(loaded, ticket=ticket("node_heartbeat", key, "m" * 50_000), key=key)
    context = prompt_context(loaded, request, "execute", NOW)
    assert len(context["ticket"]["entity_key"]) < 2_100 and context["ticket"]["entity_key"].endswith("more characters]")
    assert len(context["ticket"]["message"]) < 2_100


def test_the_prompt_says_what_the_vars_an_expression_reads_stand_for(tmp_path: Path) -> None:
    """`vars.most` in an expression means nothing to a model without its value; a secret value
    is masked like any other."""
    data = config_data("http://127.0.0.1:9")
    data["vars"] = {
        "most": {"type": "int", "value": 3, "description": "Nodes a region may lose."},
        "api_token": {"type": "string", "value": "${API_TOKEN}"},
    }
    data["invariants"][0]["expr"] = 'item.state == "up" || nodes.size() > vars.most'
    loaded = write_config(tmp_path, data)
    invariant = loaded.config.invariant("node_up")
    assert invariant is not None
    request = DiagnosisRequest(ticket=ticket("node_up", "n2"), invariant=invariant, item={"id": "n2", "state": "down"},
                               key="n2", observations={"nodes": []}, events=[], similar_tickets=[])
    context = prompt_context(loaded, request, "observe", NOW)
    assert context["vars"]["most"] == {"type": "int", "value": 3, "description": "Nodes a region may lose."}
    _, user = render_prompts(loaded, request, "observe", NOW)
    assert "- `vars.most` = 3: Nodes a region may lose." in user
    assert SECRET not in user and f"- `vars.api_token` = \"{MASK}\"" in user
    # a config without vars says nothing about them
    _, plain = render_prompts(shipped(), heartbeat_request(shipped()), "observe", NOW)
    assert "vars." not in plain
