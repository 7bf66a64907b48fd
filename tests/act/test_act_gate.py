"""The action gate through the real loop: the real anthropic client replays recorded Messages API
responses, a real loopback API receives (or does not receive) the requests, SQLite records it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.errors import StoreError
from tests.act.act_support import (
    INJECTION,
    SECRET,
    START,
    Engine,
    ReplayTransport,
    action,
    api,
    config_data,
    nodes,
    open_engine,
    requests_other_than_observation,
)
from tests.json_server import JsonServer


@pytest.fixture
def server() -> Iterator[JsonServer]:
    yield from api()


@pytest.fixture
def make(tmp_path: Path) -> Iterator:  # type: ignore[type-arg]
    engines: list[Engine] = []

    def build(data: dict, transport: ReplayTransport | None = None, **kwargs: object) -> Engine:  # type: ignore[type-arg]
        engine = open_engine(tmp_path, data, transport, **kwargs)
        engines.append(engine)
        return engine

    yield build
    for engine in engines:
        engine.close()


def refused(engine: Engine, ticket_id: int) -> list[tuple[str, str | None]]:
    return [(p.gate or "", p.detail) for p in engine.proposals(ticket_id) if p.status == "refused"]


def test_a_sound_recommendation_executes_then_verifies_and_credits_the_action(make, server: JsonServer) -> None:  # type: ignore[no-untyped-def]
    transport = ReplayTransport("submit_deregister_n2.json")
    engine = make(config_data(server.url), transport)
    report = engine.tick()
    ticket = engine.only_ticket()
    assert ticket.status == "verifying" and ticket.verify_deadline == START + 30
    [(method, path, headers, _)] = [r for r in server.requests if r[0] != "GET"]
    assert (method, path) == ("DELETE", "/v1/nodes/n2")
    assert headers["Authorization"] == f"Bearer {SECRET}"
    assert report.actions[-1]["status"] == "succeeded" and report.actions[-1]["request"] == "DELETE /v1/nodes/n2"
    [diagnosis] = engine.events(ticket.id, "diagnosis")
    assert diagnosis.data["provider"] == "claude" and diagnosis.data["model"] == "claude-sonnet-4-6"
    assert diagnosis.data["recommended_actions"][0]["params"] == {"node_id": "n2"}
    assert engine.store.tokens_by_ticket(ticket.id) == (1500, 250)
    assert engine.kinds(ticket.id) == ["firing", "incident", "incident_opened", "diagnosis", "approved", "executing", "succeeded", "verifying"]
    [execution] = engine.store.executions(ticket_id=ticket.id)
    assert execution.status == "succeeded" and execution.response == '{"deleted": "n2"}'
    assert SECRET not in str(engine.store.events(limit=10_000))
    # the node recovers: the ticket resolves and the action is credited
    server.set("/v1/nodes", nodes())
    engine.tick(START + 5)
    ticket = engine.ticket(ticket.id)
    assert ticket.status == "resolved"
    [verified] = engine.events(ticket.id, "verified")
    assert verified.data["proposal"] == execution.proposal_id and verified.data["action"] == "deregister_node"
    assert len(transport.requests) == 1  # diagnosed once


@pytest.mark.parametrize(
    ("recording", "gate", "words"),
    [
        ("submit_undeclared.json", "declared", "'restart_cluster' is not declared"),
        ("submit_bad_params.json", "params", "42 is not of type 'string'"),
        ("submit_deregister_n1.json", "guard", "is False on fresh observations"),
    ],
)
def test_unsound_recommendations_are_refused_with_a_recorded_reason_and_escalate(  # type: ignore[no-untyped-def]
    make, server: JsonServer, recording: str, gate: str, words: str
) -> None:
    engine = make(config_data(server.url), ReplayTransport(recording))
    engine.tick()
    ticket = engine.only_ticket()
    [(got_gate, detail)] = refused(engine, ticket.id)
    assert got_gate == gate and detail is not None and words in detail
    [event] = engine.events(ticket.id, "refused")
    assert event.data["gate"] == gate and words in event.data["detail"]
    assert ticket.status == "escalated"
    assert requests_other_than_observation(server) == []
    engine.tick(START + 1)  # escalated: never attempted again
    assert requests_other_than_observation(server) == [] and len(engine.proposals()) == 1


def test_a_resolved_ticket_is_never_acted_on_even_when_approved(make, server: JsonServer) -> None:  # type: ignore[no-untyped-def]
    engine = make(config_data(server.url, mode="approve"), ReplayTransport("submit_deregister_n2.json"))
    engine.tick()
    ticket = engine.only_ticket()
    [waiting] = engine.proposals(ticket.id)
    assert waiting.status == "awaiting_approval" and waiting.expires_at == START + 900
    server.set("/v1/nodes", nodes())
    engine.tick(START + 1)
    assert engine.ticket(ticket.id).status == "resolved"
    with pytest.raises(StoreError, match="it is cancelled"):  # cancelled when the ticket resolved
        engine.store.approve(waiting.id, actor="cli:alice")
    engine.tick(START + 2)
    assert requests_other_than_observation(server) == []


def test_an_approved_proposal_whose_entity_recovered_is_refused(make, server: JsonServer) -> None:  # type: ignore[no-untyped-def]
    """A held ticket stays open after its entity recovers; the gate still checks it fires now."""
    engine = make(config_data(server.url, mode="approve"), ReplayTransport("submit_deregister_n2.json"))
    engine.tick()
    ticket = engine.only_ticket()
    [waiting] = engine.proposals(ticket.id)
    engine.store.hold(ticket.id, actor="cli:alice", reason="watching it")
    server.set("/v1/nodes", nodes())
    engine.tick(START + 1)
    assert engine.ticket(ticket.id).status != "resolved"
    engine.store.approve(waiting.id, actor="cli:alice")
    engine.tick(START + 2)
    [(gate, detail)] = refused(engine, ticket.id)
    assert gate == "firing" and "no longer fires" in (detail or "")
    assert requests_other_than_observation(server) == []


def test_a_cooldown_refuses_a_new_episode_and_schedules_the_next_attempt(make, server: JsonServer) -> None:  # type: ignore[no-untyped-def]
    transport = ReplayTransport("submit_deregister_n2.json", "submit_deregister_n2.json")
    engine = make(config_data(server.url), transport)
    engine.tick()
    server.set("/v1/nodes", nodes())
    engine.tick(START + 5)  # resolved, verified
    server.set("/v1/nodes", nodes("n2"))
    engine.tick(START + 60)  # a new episode, 60 s after the action ran; its cooldown is 10 m
    second = engine.store.tickets(limit=1)[0]
    assert second.previous_ticket_id is not None
    [(gate, detail)] = refused(engine, second.id)
    assert gate == "cooldown" and "cooldown is 10m" in (detail or "")
    assert second.status == "open" and second.next_attempt_at == START + 600
    assert engine.events(second.id, "attempt_scheduled")[0].data["next_attempt_at"] == START + 600
    assert [p for m, p in requests_other_than_observation(server)] == ["/v1/nodes/n2"]
    engine.tick(START + 61)  # not due: no new diagnosis, no model call
    assert len(transport.requests) == 2 and len(engine.proposals(second.id)) == 1


def test_an_exhausted_budget_refuses(make, server: JsonServer) -> None:  # type: ignore[no-untyped-def]
    data = config_data(server.url)
    action(data, "deregister_node")["budget_per_hour"] = 1
    server.set("/v1/nodes", nodes("n2", "n3"))
    engine = make(data, ReplayTransport("submit_deregister_n2.json", "submit_deregister_n3.json"))
    engine.tick()
    first, second = sorted(engine.store.tickets(), key=lambda t: t.id)
    assert engine.ticket(first.id).status == "verifying"
    [(gate, detail)] = refused(engine, second.id)
    assert gate == "budget" and "budget_per_hour is 1" in (detail or "")
    assert engine.ticket(second.id).next_attempt_at == START + 3600
    assert [p for m, p in requests_other_than_observation(server)] == ["/v1/nodes/n2"]


def test_the_global_budget_refuses_too(make, server: JsonServer) -> None:  # type: ignore[no-untyped-def]
    server.set("/v1/nodes", nodes("n2", "n3"))
    engine = make(config_data(server.url, gate={"budget_per_hour": 1}), ReplayTransport("submit_deregister_n2.json", "submit_deregister_n3.json"))
    engine.tick()
    second = max(engine.store.tickets(), key=lambda t: t.id)
    [(gate, detail)] = refused(engine, second.id)
    assert gate == "budget" and "gate.budget_per_hour is 1" in (detail or "")


def test_the_kill_switch_refuses_parks_and_resume_restores_acting(make, server: JsonServer) -> None:  # type: ignore[no-untyped-def]
    transport = ReplayTransport("submit_deregister_n2.json")
    engine = make(config_data(server.url), transport)
    engine.store.kill(actor="cli:bob", reason="maintenance")
    report = engine.tick()
    ticket = engine.only_ticket()
    [(gate, detail)] = refused(engine, ticket.id)
    assert gate == "kill_switch" and "cli:bob" in (detail or "") and report.killed
    assert engine.ticket(ticket.id).parked == "kill_switch"
    engine.tick(START + 1)
    engine.tick(START + 2)
    assert len(engine.proposals()) == 1 and requests_other_than_observation(server) == []
    engine.store.resume(actor="cli:bob")
    engine.tick(START + 3)
    assert [p for m, p in requests_other_than_observation(server)] == ["/v1/nodes/n2"]
    assert engine.ticket(ticket.id).status == "verifying"
    assert len(transport.requests) == 1  # the second round used the cached diagnosis
    assert engine.events(ticket.id, "diagnosis")[-1].data["provider"] == "claude"


def test_prompt_injection_reaches_the_prompt_but_no_undeclared_request_is_sent(make, server: JsonServer) -> None:  # type: ignore[no-untyped-def]
    server.set("/v1/nodes", nodes(INJECTION))
    transport = ReplayTransport("submit_injected.json")
    engine = make(config_data(server.url), transport)
    engine.tick()
    ticket = engine.only_ticket()
    assert INJECTION in transport.requests[0]["messages"][0]["content"]  # verbatim, as data
    outcomes = [(p.action, p.params["node_id"] if "node_id" in p.params else None, p.status, p.gate) for p in engine.proposals(ticket.id)]
    assert outcomes == [
        ("delete_policy", None, "refused", "declared"),
        ("deregister_node", "../policies/default", "refused", "guard"),
        ("restart_node", "../../v1/policies/default", "failed", None),  # 404: no such node
    ]
    # only declared shapes reached the server: the observation's GET and restart_node's POST,
    # whose param stayed one URL-encoded path segment
    sent = requests_other_than_observation(server)
    assert sent == [("POST", "/v1/nodes/..%2F..%2Fv1%2Fpolicies%2Fdefault/restart")]
    assert not any("policies" in path.replace("%2F", "") and method == "DELETE" for method, path in sent)
    [(_, _, _, body)] = [r for r in server.requests if r[0] == "POST"]
    assert body == b'{"node": "../../v1/policies/default"}'


def test_a_runbook_param_that_cannot_evaluate_is_a_refused_proposal_shown_by_tickets_show(  # type: ignore[no-untyped-def]
    make, server: JsonServer
) -> None:
    from click.testing import CliRunner

    from engine.cli import main

    data = config_data(server.url, diagnosis={"provider": "runbook"})
    data["invariants"][0]["runbook"] = [{"action": "deregister_node", "params": {"node_id": "item.host"}}]  # no such field
    engine = make(data)
    engine.tick()
    ticket = engine.only_ticket()
    [(gate, detail)] = refused(engine, ticket.id)
    assert gate == "params" and detail is not None and "param 'node_id' (item.host)" in detail and "no key 'host'" in detail
    assert ticket.status == "escalated"  # nothing safe to run: a human looks, and knows why
    assert requests_other_than_observation(server) == []
    shown = CliRunner().invoke(main, ["tickets", "show", "--config", str(engine.loaded.file), str(ticket.id)],
                               env={"API_TOKEN": SECRET, "COLUMNS": "400"})
    assert shown.exit_code == 0, shown.output
    assert "params" in shown.output and "no key 'host'" in shown.output.replace("\n", "")
