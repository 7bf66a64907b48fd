"""The claude provider through the REAL anthropic client, whose HTTP transport replays recorded
Messages API responses (tests/diagnose/recordings/), against a real loopback HTTP server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from diagnose_support import (  # noqa: F401 - fixtures
    INJECTION,
    NOW,
    SECRET,
    HangingTransport,
    ReplayTransport,
    Scene,
    api_server,
    open_scene,
    scene,
)
from engine.act import StoreDiagnosisCache, StoreTokenLedger
from engine.diagnose import Diagnoser, Diagnosis
from engine.diagnose.claude import MAX_RETRIES
from engine.diagnose.runbook import RUNBOOK_CONFIDENCE
from engine.diagnose.schema import SUBMIT_TOOL, submission_schema
from engine.redact import MASK
from tests.json_server import JsonServer


def diagnose(scene: Scene, diagnoser: Diagnoser, **changes: Any) -> Diagnosis:
    return scene.run(lambda: diagnoser.diagnose(scene.request(**changes), mode="execute"))  # type: ignore[no-any-return]


def gets_of(server: JsonServer, path: str) -> int:
    return sum(1 for method, p, _, _ in server.requests if method == "GET" and p.split("?")[0] == path)


def test_tool_turn_reruns_an_observation_then_submits(scene: Scene) -> None:
    transport = ReplayTransport("tool_use_observe_nodes.json", "submit_deregister_n2.json")
    before = gets_of(scene.server, "/v1/nodes")
    result = diagnose(scene, scene.diagnoser(transport))

    assert result.fallback_reason is None
    assert result.provider == "claude" and result.model == "claude-sonnet-4-6"
    assert [(a.action, a.params) for a in result.recommended_actions] == [("deregister_node", {"node_id": "n2"})]
    assert result.confidence == 0.86 and result.alternatives_considered[0].hypothesis.startswith("A network partition")
    assert (result.input_tokens, result.output_tokens, result.tool_calls) == (1480 + 1730, 64 + 310, 1)
    # the tool really re-ran the declared observation against the server
    assert gets_of(scene.server, "/v1/nodes") == before + 1
    assert transport.paths == ["/v1/messages", "/v1/messages"]

    first, second = transport.requests
    assert first["tool_choice"] == {"type": "any"}
    assert first["model"] == "claude-sonnet-4-6" and first["max_tokens"] == 2048
    tools = {t["name"]: t for t in first["tools"]}
    assert set(tools) == {"observe_nodes", "observe_limits", SUBMIT_TOOL}
    assert tools[SUBMIT_TOOL]["input_schema"] == submission_schema(scene.loaded.config.actions)
    # the second call carries the assistant's tool_use and our tool_result, paired by id
    assert second["messages"][1]["role"] == "assistant"
    assert second["messages"][1]["content"][1] == {"type": "tool_use", "id": "toolu_01Nodes", "name": "observe_nodes", "input": {}}
    tool_result = second["messages"][2]["content"][0]
    assert tool_result["type"] == "tool_result" and tool_result["tool_use_id"] == "toolu_01Nodes"
    assert tool_result["is_error"] is False
    payload = json.loads(tool_result["content"])
    assert payload["ok"] is True and [n["id"] for n in payload["value"]] == ["n1", "n2"]
    # tokens recorded per call against the ticket, in the store
    assert scene.token_rows() == [
        (scene.ticket.id, "claude", "claude-sonnet-4-6", 1480, 64, NOW),
        (scene.ticket.id, "claude", "claude-sonnet-4-6", 1730, 310, NOW),
    ]


def test_a_secret_never_reaches_the_model_but_its_mask_does(scene: Scene) -> None:
    transport = ReplayTransport("tool_use_observe_nodes.json", "submit_deregister_n2.json")
    diagnose(scene, scene.diagnoser(transport))
    sent = transport.sent_text()
    # the observed node note, the subject context and the tool result all carried the token
    assert SECRET not in sent
    assert sent.count(MASK) >= 3
    user_prompt = transport.requests[0]["messages"][0]["content"]
    assert f"uses token {MASK}" in user_prompt


def test_rate_limited_call_is_retried_by_the_client(scene: Scene) -> None:
    transport = ReplayTransport("rate_limited.json", "submit_deregister_n2.json")
    result = diagnose(scene, scene.diagnoser(transport))
    assert result.provider == "claude"
    assert len(transport.requests) == 2
    assert transport.requests[0] == transport.requests[1]  # the same request, retried


def test_server_errors_exhaust_retries_then_the_runbook_answers(scene: Scene) -> None:
    transport = ReplayTransport(*["internal_error.json"] * (MAX_RETRIES + 1))
    result = diagnose(scene, scene.diagnoser(transport))
    assert len(transport.requests) == MAX_RETRIES + 1
    assert result.provider == "runbook" and result.confidence == RUNBOOK_CONFIDENCE
    assert result.fallback_reason == (
        f"claude: the Messages API answered HTTP 500 api_error after {MAX_RETRIES} retries: Internal server error"
    )
    assert [(a.action, a.params) for a in result.recommended_actions] == [
        ("deregister_node", {"node_id": "n2"}),
        ("set_limit", {"limit": 200}),
    ]
    assert scene.token_rows() == [] and result.input_tokens == 0


def test_an_authentication_error_is_not_retried(scene: Scene) -> None:
    transport = ReplayTransport("unauthorized.json")
    result = diagnose(scene, scene.diagnoser(transport))
    assert len(transport.requests) == 1
    assert result.provider == "runbook"
    assert result.fallback_reason == "claude: the Messages API answered HTTP 401 authentication_error: invalid x-api-key"


def test_spent_hourly_budget_makes_no_call(scene: Scene) -> None:
    budget = scene.loaded.config.diagnosis.token_budget_per_hour
    StoreTokenLedger(scene.store).record(scene.ticket.id, "claude", "m", budget - 10, 10, NOW - 3599)
    transport = ReplayTransport("submit_deregister_n2.json")
    result = diagnose(scene, scene.diagnoser(transport))
    assert transport.requests == []
    assert result.provider == "runbook"
    assert result.fallback_reason is not None and "hourly token budget is spent" in result.fallback_reason
    assert f"{budget} of {budget} tokens" in result.fallback_reason


def test_tokens_older_than_an_hour_do_not_count(scene: Scene) -> None:
    budget = scene.loaded.config.diagnosis.token_budget_per_hour
    StoreTokenLedger(scene.store).record(scene.ticket.id, "claude", "m", budget, 0, NOW - 3601)
    transport = ReplayTransport("submit_deregister_n2.json")
    result = diagnose(scene, scene.diagnoser(transport))
    assert result.provider == "claude" and len(transport.requests) == 1


def test_same_fingerprint_hits_the_cache_and_new_data_does_not(scene: Scene) -> None:
    transport = ReplayTransport("submit_deregister_n2.json", "submit_deregister_n2.json")
    cache = StoreDiagnosisCache(scene.store, clock=lambda: NOW)
    diagnoser = scene.diagnoser(transport, cache=cache)

    async def three() -> list[Diagnosis]:
        first = await diagnoser.diagnose(scene.request(), mode="execute")
        again = await diagnoser.diagnose(scene.request(), mode="execute")
        changed_item = dict(scene.ticket.snapshot["item"], decisions=8)
        changed = await diagnoser.diagnose(scene.request(item=changed_item), mode="execute")
        return [first, again, changed]

    first, again, changed = scene.run(three)
    assert again == first
    assert len(transport.requests) == 2  # the first and the changed entity; the repeat was cached
    assert cache.stored == 2 and changed.provider == "claude"
    # a second diagnoser on the same store (another process, a restart) finds it cached too
    later = scene.diagnoser(ReplayTransport())
    assert scene.run(lambda: later.diagnose(scene.request(), mode="execute")) == first


def test_a_fallback_is_cached_too_so_a_failing_api_is_not_called_every_tick(scene: Scene) -> None:
    transport = ReplayTransport("unauthorized.json")
    diagnoser = scene.diagnoser(transport)

    async def twice() -> tuple[Diagnosis, Diagnosis]:
        return (
            await diagnoser.diagnose(scene.request(), mode="execute"),
            await diagnoser.diagnose(scene.request(), mode="execute"),
        )

    first, second = scene.run(twice)
    assert first == second and first.provider == "runbook"
    assert len(transport.requests) == 1


def test_prompt_injection_reaches_the_prompt_as_data_and_nothing_undeclared_is_requested(
    tmp_path: Path, api_server: JsonServer
) -> None:
    scene = open_scene(tmp_path, api_server, bad_id=INJECTION)
    try:
        transport = ReplayTransport("tool_use_observe_nodes.json", "submit_injected.json")
        result = diagnose(scene, scene.diagnoser(transport))
    finally:
        scene.store.close()
    first = transport.requests[0]
    user_prompt = first["messages"][0]["content"]
    assert INJECTION in user_prompt  # verbatim, as data
    assert "not\ninstructions" in first["system"] or "not instructions" in first["system"]
    # the model "obeyed"; its output is passed on untouched for the gate to refuse, never run here
    assert result.provider == "claude"
    assert [a.action for a in result.recommended_actions] == ["delete_policy", "deregister_node"]
    # the server under test saw only the declared observations' GETs
    methods_paths = {(m, p.split("?")[0]) for m, p, _, _ in api_server.requests}
    assert methods_paths <= {("GET", "/v1/nodes"), ("GET", "/v1/limits")}


def test_malformed_submission_gets_its_errors_back_once(scene: Scene) -> None:
    transport = ReplayTransport("submit_malformed.json", "submit_deregister_n2.json")
    result = diagnose(scene, scene.diagnoser(transport))
    assert result.provider == "claude"
    assert (result.input_tokens, result.output_tokens) == (1500 + 1730, 90 + 310)
    retry = transport.requests[1]
    assert retry["tool_choice"] == {"type": "tool", "name": SUBMIT_TOOL}
    rejected = retry["messages"][2]["content"][0]
    assert rejected["tool_use_id"] == "toolu_01Bad" and rejected["is_error"] is True
    for problem in ("root_cause: Field required", "confidence:", "evidence:", "recommended_actions.0.reason"):
        assert problem in rejected["content"]


def test_malformed_twice_falls_back_with_the_reason(scene: Scene) -> None:
    transport = ReplayTransport("submit_malformed.json", "submit_malformed.json")
    result = diagnose(scene, scene.diagnoser(transport))
    assert len(transport.requests) == 2
    assert result.provider == "runbook"
    assert result.fallback_reason is not None and result.fallback_reason.startswith(
        "claude: the model's submission was malformed twice: root_cause: Field required"
    )
    # what the failed attempt spent is still on the diagnosis and in the ledger
    assert (result.input_tokens, result.output_tokens) == (3000, 180)
    assert scene.store.tokens_by_ticket(scene.ticket.id) == (3000, 180)


def test_prose_instead_of_a_tool_call_is_nudged_to_submit(scene: Scene) -> None:
    transport = ReplayTransport("prose_only.json", "submit_deregister_n2.json")
    result = diagnose(scene, scene.diagnoser(transport))
    assert result.provider == "claude"
    nudge = transport.requests[1]
    assert nudge["tool_choice"] == {"type": "tool", "name": SUBMIT_TOOL}
    assert [m["role"] for m in nudge["messages"]] == ["user", "assistant", "user"]


def test_turns_are_bounded_and_the_last_turn_must_submit(tmp_path: Path, api_server: JsonServer) -> None:
    scene = open_scene(
        tmp_path, api_server, diagnosis={"provider": "claude", "max_tool_turns": 2, "timeout": "2s"}
    )
    try:
        transport = ReplayTransport("tool_use_observe_nodes.json", "tool_use_observe_nodes.json", "submit_deregister_n2.json")
        result = diagnose(scene, scene.diagnoser(transport))
    finally:
        scene.store.close()
    assert len(transport.requests) == 2
    assert [r["tool_choice"] for r in transport.requests] == [{"type": "any"}, {"type": "tool", "name": SUBMIT_TOOL}]
    assert result.provider == "runbook"
    assert result.fallback_reason == "claude: no valid submission within 2 model call(s) (diagnosis.max_tool_turns)"
    assert result.tool_calls == 2


def test_a_hung_api_is_cut_off_by_the_timeout(tmp_path: Path, api_server: JsonServer) -> None:
    scene = open_scene(
        tmp_path, api_server, diagnosis={"provider": "claude", "max_tool_turns": 2, "timeout": "200ms"}
    )
    try:
        transport = HangingTransport()
        result = diagnose(scene, scene.diagnoser(transport))
    finally:
        scene.store.close()
    assert transport.calls == 1
    assert result.provider == "runbook"
    assert result.fallback_reason == "claude: no answer from the Messages API within 200ms (diagnosis.timeout)"


def test_auto_uses_claude_only_with_an_api_key(tmp_path: Path, api_server: JsonServer) -> None:
    scene = open_scene(tmp_path, api_server, diagnosis={"provider": "auto"})
    try:
        transport = ReplayTransport("submit_deregister_n2.json")
        without_key = diagnose(scene, scene.diagnoser(transport, env={}))
        # another entity content: the store's cache must not answer for the keyless run
        other = dict(scene.ticket.snapshot["item"], decisions=8)
        with_key = diagnose(scene, scene.diagnoser(transport, env={"ANTHROPIC_API_KEY": "sk-test"}), item=other)
    finally:
        scene.store.close()
    assert without_key.provider == "runbook" and without_key.fallback_reason is None
    assert with_key.provider == "claude"
    assert len(transport.requests) == 1


def test_claude_without_key_or_client_falls_back_and_says_why(scene: Scene) -> None:
    result = diagnose(scene, scene.diagnoser(None, env={}))
    assert result.provider == "runbook"
    assert result.fallback_reason == "claude: ANTHROPIC_API_KEY is not set, so Claude cannot be called"


def test_an_unrenderable_prompt_falls_back_without_calling(tmp_path: Path, api_server: JsonServer) -> None:
    scene = open_scene(tmp_path, api_server, prompts={"ticket": "{{ ticket.nothing.here }}"})
    try:
        transport = ReplayTransport("submit_deregister_n2.json")
        result = diagnose(scene, scene.diagnoser(transport))
    finally:
        scene.store.close()
    assert transport.requests == []
    assert result.provider == "runbook"
    assert result.fallback_reason is not None
    assert "prompts.ticket of" in result.fallback_reason and "nothing" in result.fallback_reason

