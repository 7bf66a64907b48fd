"""The demo's timeline lines from the engine's own audit events, and its fixed result line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.lab.demo import DemoResult, run_store_path
from engine.lab.models import Lab
from engine.lab.spec import LabSpec
from engine.lab.timeline import MAX_TEXT, TimelineEntry, from_event
from engine.store import Event

INJECTED = 1_000.0


def event(kind: str, data: dict[str, Any], *, at: float = 1_006.25, actor: str = "engine", key: str | None = "node2") -> Event:
    return Event(1, 7, "node_heartbeat", key, kind, actor, at, data)


@pytest.mark.parametrize(
    ("kind", "data", "actor", "expected_kind", "expected_text"),
    [
        ("pending", {}, "engine", "pending", "node_heartbeat/node2 violated (pending: waiting out `for`)"),
        ("firing", {}, "engine", "firing", "node_heartbeat/node2 firing: ticket opened"),
        ("resolved", {}, "engine", "resolved", "node_heartbeat/node2 holds again: ticket resolved"),
        ("diagnosis", {"provider": "runbook", "summary": "node node2 is down", "cached": False,
                       "recommended_actions": [{"action": "deregister_node", "params": {"node_id": "node2"}}]},
         "diagnosis:runbook", "diagnosed", "node_heartbeat/node2 by runbook: node node2 is down → recommends deregister_node"),
        ("diagnosis", {"provider": "runbook", "summary": "s", "cached": True, "recommended_actions": [],
                       "fallback_reason": "HTTP 500"},
         "diagnosis:runbook", "diagnosed", "node_heartbeat/node2 by runbook (cached): s → recommends no action; fell back: HTTP 500"),
        ("proposed", {"proposal": 3, "action": "deregister_node", "params": {"node_id": "node2"}},
         "engine", "proposed", "deregister_node(node_id=node2) #3 (observe mode: recorded, not run)"),
        ("refused", {"proposal": 4, "action": "reset_key", "params": {}, "gate": "cooldown", "detail": "ran 10s ago"},
         "engine", "refused", "reset_key #4 by gate cooldown: ran 10s ago"),
        ("awaiting_approval", {"proposal": 5, "action": "raise_redis_maxmemory", "params": {"bytes": 2},
                               "detail": "action raise_redis_maxmemory requires approval"},
         "engine", "proposed", "raise_redis_maxmemory(bytes=2) #5 awaits approval (action raise_redis_maxmemory requires approval)"),
        ("approved", {"proposal": 5, "action": "raise_redis_maxmemory"}, "demo", "approved", "raise_redis_maxmemory #5 by demo"),
        ("succeeded", {"proposal": 1, "action": "deregister_node", "request": "DELETE /v1/nodes/node2", "duration_s": 0.0861},
         "engine", "executed", "deregister_node #1: DELETE /v1/nodes/node2 → ok in 0.086s"),
        ("failed", {"proposal": 1, "action": "deregister_node", "request": "DELETE /v1/nodes/node2", "error": "HTTP 500"},
         "engine", "failed", "deregister_node #1: DELETE /v1/nodes/node2 → HTTP 500"),
        ("verified", {"proposal": 1, "action": "deregister_node"}, "engine", "verified",
         "node_heartbeat/node2 holds again after deregister_node #1, whose effect is confirmed: credited"),
        ("recovered", {"proposal": 1, "action": "deregister_node"}, "engine", "recovered",
         "node_heartbeat/node2 holds again after deregister_node #1, whose effect was not confirmed: not credited"),
        ("reverted", {"revert": 1, "action": "fence", "params": {"id": "node2"}, "reason": "unfence #4 ran: HTTP 200"}, "engine",
         "reverted", "node_heartbeat/node2: fence(id=node2) undone: unfence #4 ran: HTTP 200"),
        ("revert_waiting", {"revert": 1, "action": "fence", "reason": "gate kill_switch: the kill switch is on"}, "engine",
         "revert", "node_heartbeat/node2: the undoing of fence waits: gate kill_switch: the kill switch is on"),
        ("escalated", {"reason": "no safe action"}, "engine", "escalated", "node_heartbeat/node2: no safe action"),
    ],
)  # fmt: skip
def test_engine_events_become_timeline_lines(
    kind: str, data: dict[str, Any], actor: str, expected_kind: str, expected_text: str
) -> None:
    entry = from_event(event(kind, data, actor=actor), INJECTED)
    assert entry == TimelineEntry(6.25, expected_kind, expected_text)
    assert entry.line() == f"   +6.2s  {expected_kind:<10} {expected_text}"


def test_events_before_injection_and_without_a_key_or_a_clock() -> None:
    before = from_event(event("firing", {}, at=997.0, key=""), INJECTED)
    assert before == TimelineEntry(-3.0, "firing", "node_heartbeat firing: ticket opened")
    assert from_event(event("firing", {}), None) == TimelineEntry(None, "firing", "node_heartbeat/node2 firing: ticket opened")
    assert TimelineEntry(None, "lab", "up").line() == "          lab        up"


def test_noise_has_no_line() -> None:
    assert from_event(event("occurrence", {}), INJECTED) is None
    assert from_event(event("hold", {"reason": "x"}), INJECTED) is None


@given(st.text(), st.text())
def test_a_line_is_one_bounded_line_whatever_the_engine_recorded(summary: str, detail: str) -> None:
    for kind, data in (("diagnosis", {"provider": "claude", "summary": summary, "recommended_actions": []}),
                       ("refused", {"action": "a", "gate": "guard", "detail": detail})):
        entry = from_event(event(kind, data), INJECTED)
        assert entry is not None
        assert "\n" not in entry.line() and "\r" not in entry.text and len(entry.text) <= MAX_TEXT


def test_the_result_line_has_exactly_the_fixed_keys() -> None:
    result = DemoResult("kill_node", True, 2.149, 11.25, ["deregister_node"], "execute", tickets_opened=1, diagnoses=1,
                        reasons=("ignored",))
    assert result.as_json() == {
        "scenario": "kill_node", "ok": True, "detected_s": 2.1, "recovered_s": 11.2, "actions": ["deregister_node"], "mode": "execute",
        "tickets_opened": 1, "diagnoses": 1,
    }  # fmt: skip
    assert DemoResult("x", False, None, None, [], "observe").as_json()["detected_s"] is None


def test_every_demo_run_gets_a_store_of_its_own(tmp_path: Path) -> None:
    spec = LabSpec(Lab.model_construct(name="x"), tmp_path / "lab.yaml", tmp_path, tmp_path / "state")
    first = run_store_path(spec, "kill_node", 1_767_225_600.0)
    assert first == tmp_path / "state" / "demos" / "kill_node-20260101T000000Z.db"
    first.parent.mkdir(parents=True)
    first.touch()
    assert run_store_path(spec, "kill_node", 1_767_225_600.0) == first.with_name("kill_node-20260101T000000Z-2.db")
