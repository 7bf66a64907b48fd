"""Verification, attempts, approvals, crash safety and observe mode through the real loop, offline
(the runbook provider), with a real loopback API and a real SQLite store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.act import RecordingExecutor
from engine.diagnose import Diagnosis
from engine.errors import StoreError
from engine.store import Execution, StartRule, Store
from tests.act.act_support import START, Engine, action, api, config_data, nodes, open_engine, requests_other_than_observation
from tests.json_server import JsonServer


@pytest.fixture
def server() -> Iterator[JsonServer]:
    yield from api()


def runbook_config(url: str, **overrides: object) -> dict:  # type: ignore[type-arg]
    data = config_data(url, diagnosis={"provider": "runbook"}, **overrides)
    return data


def deletes(server: JsonServer) -> list[str]:
    return [path for method, path in requests_other_than_observation(server) if method == "DELETE"]


def test_an_action_that_does_not_fix_escalates_after_verify_within_and_never_exceeds_max_attempts(
    tmp_path: Path, store_at: Path | str, server: JsonServer
) -> None:
    data = runbook_config(server.url)
    action(data, "deregister_node").update(max_attempts=2, cooldown="5s", verify={"within": "30s"})
    engine = open_engine(tmp_path, data, store_at=store_at)
    try:
        engine.tick()  # attempt 1: the DELETE succeeds, but the node stays down
        ticket = engine.only_ticket()
        assert engine.ticket(ticket.id).status == "verifying" and deletes(server) == ["/v1/nodes/n2"]
        [diagnosis] = engine.events(ticket.id, "diagnosis")
        Diagnosis.model_validate({k: v for k, v in diagnosis.data.items() if k != "cached"})  # the one structured type, offline
        assert diagnosis.data["provider"] == "runbook" and diagnosis.data["recommended_actions"][0]["params"] == {"node_id": "n2"}
        engine.tick(START + 29)
        assert engine.ticket(ticket.id).status == "verifying" and len(deletes(server)) == 1
        engine.tick(START + 31)  # window passed: attempt 2 (cooldown 5 s is over, 1 of 2 attempts used)
        assert engine.ticket(ticket.id).status == "verifying" and len(deletes(server)) == 2
        assert engine.events(ticket.id, "verification_failed")[0].data["attempts"] == 1
        engine.tick(START + 62)  # the second window passed: no attempt left
        assert engine.ticket(ticket.id).status == "escalated"
        [escalated] = engine.events(ticket.id, "escalated")
        assert escalated.data["attempts"] == 2 and escalated.data["max_attempts"] == 2
        for at in range(63, 400, 37):  # no retry storm
            engine.tick(START + at)
        assert len(deletes(server)) == 2 and engine.store.attempts(ticket.id, "deregister_node") == 2
        # the episode ends: the escalated ticket resolves (no credit: it was not verifying)
        server.set("/v1/nodes", nodes())
        engine.tick(START + 500)
        assert engine.ticket(ticket.id).status == "resolved" and engine.events(ticket.id, "verified") == []
    finally:
        engine.close()


def test_observe_mode_records_proposals_only_until_the_mode_changes(tmp_path: Path, store_at: Path | str, server: JsonServer) -> None:
    engine = open_engine(tmp_path, runbook_config(server.url, mode="observe"), store_at=store_at)
    try:
        engine.tick()
        ticket = engine.only_ticket()
        [proposal] = engine.proposals(ticket.id)
        assert proposal.status == "proposed" and engine.ticket(ticket.id).parked == "observe"
        engine.tick(START + 1)
        assert len(engine.proposals()) == 1 and deletes(server) == []
        engine.store.set_mode("execute", actor="cli:carol")
        report = engine.tick(START + 2)
        assert report.mode == "execute" and deletes(server) == ["/v1/nodes/n2"]
    finally:
        engine.close()


def test_approval_required_waits_expires_and_escalates(tmp_path: Path, store_at: Path | str, server: JsonServer) -> None:
    data = runbook_config(server.url, gate={"approval_ttl": "1m"})
    action(data, "deregister_node")["approval"] = "required"
    engine = open_engine(tmp_path, data, store_at=store_at)
    try:
        engine.tick()
        ticket = engine.only_ticket()
        [waiting] = engine.proposals(ticket.id)
        assert waiting.status == "awaiting_approval" and waiting.detail == "action deregister_node requires approval"
        engine.tick(START + 61)
        assert engine.store.proposal(waiting.id).status == "expired"  # type: ignore[union-attr]
        assert engine.ticket(ticket.id).status == "escalated" and deletes(server) == []
    finally:
        engine.close()


def test_a_ticket_that_resolves_cancels_its_waiting_proposals(tmp_path: Path, store_at: Path | str, server: JsonServer) -> None:
    engine = open_engine(tmp_path, runbook_config(server.url, mode="approve"), store_at=store_at)
    try:
        engine.tick()
        first = engine.only_ticket()
        [waiting] = engine.proposals(first.id)
        server.set("/v1/nodes", nodes())  # the node came back by itself
        engine.tick(START + 1)
        assert engine.ticket(first.id).status == "resolved"
        cancelled = engine.store.proposal(waiting.id)
        assert cancelled is not None and cancelled.status == "cancelled"
        assert cancelled.detail == "its ticket resolved before it ran" and cancelled.decided_by == "engine"
        with pytest.raises(StoreError, match="it is cancelled"):
            engine.store.approve(waiting.id, actor="cli:dan")
        # Resolved by hand: an approved proposal that has not started is cancelled too.
        server.set("/v1/nodes", nodes("n2"))
        engine.tick(START + 2)
        second = engine.store.tickets(status="open")[0]
        [waiting] = engine.proposals(second.id)
        engine.store.approve(waiting.id, actor="cli:dan")
        engine.store.resolve(second.id, actor="cli:dan", reason="handled by hand")
        assert engine.store.proposal(waiting.id).status == "cancelled"  # type: ignore[union-attr]
        engine.tick(START + 3)
        assert deletes(server) == []
    finally:
        engine.close()


def test_kill_cancels_pending_proposals_and_refuses_approval(tmp_path: Path, store_at: Path | str, server: JsonServer) -> None:
    engine = open_engine(tmp_path, runbook_config(server.url, mode="approve"), store_at=store_at)
    try:
        engine.tick()
        [waiting] = engine.proposals()
        cancelled = engine.store.kill(actor="cli:dan")
        assert [p.id for p in cancelled] == [waiting.id] and cancelled[0].status == "cancelled"
        with pytest.raises(StoreError, match="it is cancelled"):
            engine.store.approve(waiting.id, actor="cli:dan")
        engine.tick(START + 1)
        assert deletes(server) == [] and engine.only_ticket().parked == "kill_switch"
        engine.store.resume(actor="cli:dan")
        engine.tick(START + 2)  # attempted again: a new proposal waits for approval
        [_, again] = engine.proposals()
        assert again.status == "awaiting_approval"
        engine.store.kill(actor="cli:dan")
        with pytest.raises(StoreError, match="cancelled"):
            engine.store.approve(again.id, actor="cli:dan")
    finally:
        engine.close()


def test_a_crash_during_an_execution_never_replays_it(tmp_path: Path, store_at: Path | str, server: JsonServer) -> None:
    engine = open_engine(tmp_path, runbook_config(server.url, mode="approve"), store_at=store_at)
    engine.tick()
    [waiting] = engine.proposals()
    engine.store.approve(waiting.id, actor="cli:erin")
    # the engine wrote the execution row, then died before the request finished
    rule = StartRule.of(engine.monitor.config.action(waiting.action), "n2", total_budget_per_hour=20)
    execution = engine.store.begin_execution(waiting.id, request={"line": "DELETE /v1/nodes/n2"}, at=START + 1, rule=rule)
    assert isinstance(execution, Execution)
    engine.close()
    restarted = open_engine(tmp_path, runbook_config(server.url, mode="approve"), store_at=store_at)
    try:
        [row] = restarted.store.executions()
        assert row.id == execution.id and row.status == "unknown"
        assert restarted.store.proposal(waiting.id).status == "failed"  # type: ignore[union-attr]
        restarted.tick(START + 2)
        restarted.tick(START + 3)
        assert deletes(server) == []
        assert restarted.only_ticket().status == "escalated"
    finally:
        restarted.close()


def test_the_executor_seam_records_instead_of_sending(tmp_path: Path, store_at: Path | str, server: JsonServer) -> None:
    recorder = RecordingExecutor()
    engine = open_engine(tmp_path, runbook_config(server.url), executor=recorder, store_at=store_at)
    try:
        engine.tick()
        assert [r.line for r in recorder.requests] == ["DELETE /v1/nodes/n2"] and deletes(server) == []
        assert engine.only_ticket().status == "verifying"
    finally:
        engine.close()


def test_store_schema_upgrades_a_v2_file(tmp_path: Path) -> None:
    import sqlite3

    from engine.store import MIGRATIONS, _statements

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at REAL NOT NULL)")
    for version, script in enumerate(MIGRATIONS[:2], start=1):
        for statement in _statements(script):
            conn.execute(statement)
        conn.execute("INSERT INTO schema_version VALUES (?, 0)", (version,))
    conn.execute(
        "INSERT INTO tickets (invariant, entity_key, severity, status, first_seen, last_seen) VALUES ('x', 'k', 'warning', 'open', 1, 1)"
    )
    conn.commit()
    conn.close()
    with Store(path) as store:
        assert store.schema_version() == len(MIGRATIONS)
        [ticket] = store.due_tickets(10)
        assert ticket.parked is None and ticket.next_attempt_at is None
