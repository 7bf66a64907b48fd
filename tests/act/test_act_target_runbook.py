"""`target_up` can have a runbook (a target's `runbook:`): when every observation of a target has
failed for its `down_after`, the runbook provider proposes the target's entries, they pass the
same gate as any other proposal, and the ticket resolves once the target answers again. Through
the real loop on a virtual clock, a real loopback supervisor API, a real dead port for the
service, and a real SQLite store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.config.models import TARGET_UP
from tests.act.act_support import NODE_ID, START, Engine, config_data, nodes, open_engine
from tests.json_server import JsonServer
from tests.ports import free_port

RESTART = "POST /v1/services/app/restart"


def supervised_config(supervisor: str, app: str, **overrides: Any) -> dict[str, Any]:
    data = config_data(supervisor, diagnosis={"provider": "runbook"}, **overrides)
    data["targets"]["app"] = {
        "url": app,
        "timeout": "1s",
        "runbook": [{"action": "restart_service", "params": {"service": "key", "why": "item.error"},
                     "reason": "The service stopped answering; its supervisor starts it again."}],
    }
    data["observations"]["app_health"] = {"http": {"target": "app", "path": "/health"}, "select": "body.ok"}
    data["invariants"].append({"name": "app_healthy", "description": "The service says it is healthy.",
                               "expr": "app_health", "inhibited_by": [TARGET_UP]})
    data["actions"].append({
        "name": "restart_service",
        "description": "Ask the supervisor to start a service again.",
        "params": {"type": "object", "required": ["service", "why"], "additionalProperties": False,
                   "properties": {"service": NODE_ID, "why": {"type": "string", "maxLength": 500}}},
        "http": {"target": "api", "method": "POST", "path": "/v1/services/{service}/restart", "body": {"why": "{why}"}},
        "cooldown": "10m",
    })
    return data


@pytest.fixture
def supervisor() -> Iterator[JsonServer]:
    with JsonServer() as api:
        api.set("/v1/nodes", nodes())
        api.set("/v1/services/app/restart", {"restarting": "app"})
        yield api


def requests(server: JsonServer) -> list[str]:
    return [f"{m} {p}" for m, p, _, _ in server.requests if not (m == "GET" and p == "/v1/nodes")]


def test_a_dead_targets_runbook_is_proposed_gated_and_executed_once_then_the_ticket_resolves(
    tmp_path: Path, supervisor: JsonServer,
) -> None:
    app_port = free_port()  # nothing listens: connection refused
    engine: Engine = open_engine(tmp_path, supervised_config(supervisor.url, f"http://127.0.0.1:{app_port}"))
    try:
        down_after = engine.loaded.config.down_after("app")
        at = START
        while at <= START + down_after:
            engine.tick(at)
            at += 1
        ticket = engine.only_ticket()
        assert (ticket.invariant, ticket.entity_key, ticket.severity) == (TARGET_UP, "app", "critical")
        assert requests(supervisor) == [RESTART]
        [proposal] = engine.proposals(ticket.id)
        assert (proposal.action, proposal.source, proposal.status) == ("restart_service", "runbook", "succeeded")
        assert proposal.params["service"] == "app" and "connection refused" in proposal.params["why"].lower()
        body = next(b for m, p, _, b in supervisor.requests if f"{m} {p}" == RESTART)
        assert b"connection refused" in body.lower()
        # still down: the same ticket, no second restart (the cooldown and the one live proposal)
        for _ in range(3):
            engine.tick(at)
            at += 1
        assert requests(supervisor) == [RESTART] and len(engine.store.tickets()) == 1
        # the supervisor brought it back: target_up resolves on the first answer, nothing else opens
        with JsonServer(port=app_port) as app:
            app.set("/health", {"ok": True})
            engine.tick(at)
            assert engine.ticket(ticket.id).status == "resolved"
            engine.tick(at + 1)
        assert [t.id for t in engine.store.tickets()] == [ticket.id]
    finally:
        engine.close()


def test_without_a_runbook_target_up_asks_a_human(tmp_path: Path, supervisor: JsonServer) -> None:
    data = supervised_config(supervisor.url, f"http://127.0.0.1:{free_port()}")
    del data["targets"]["app"]["runbook"]
    engine = open_engine(tmp_path, data)
    try:
        for second in range(int(engine.loaded.config.down_after("app")) + 1):
            engine.tick(START + second)
        ticket = engine.only_ticket()
        assert ticket.invariant == TARGET_UP and requests(supervisor) == []
        assert engine.proposals(ticket.id) == []
        [diagnosis] = engine.events(ticket.id, "diagnosis")
        assert "has no runbook entries: a human should look" in " ".join(diagnosis.data["evidence"])
        assert "connection refused" in diagnosis.data["summary"]
        [no_action] = engine.events(ticket.id, "no_action")
        assert "a human should look" in no_action.data["reason"]
    finally:
        engine.close()
