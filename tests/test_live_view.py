"""The live view of `opctl run` (v2), rendered with rich's recording console at 80x24 and 160x45
and compared with committed snapshots (OPCTL_UPDATE_SNAPSHOTS=1 rewrites them): the header shows
the subject, the mode and its source and the kill switch; invariants have one column per state;
failing endpoints are named; a proposal awaiting approval shows the exact command that approves
it; executed actions stay in the timeline of recent actions. Observed text is shown inertly."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from engine.cockpit import Cockpit, ModeInfo, OpenTicket
from engine.loop import TickReport
from engine.store import Event, Proposal, Ticket
from engine.view import live_view

SNAPSHOTS = Path(__file__).parent / "snapshots"
T = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC
HOSTILE = "\x1b]52;c;aGVsbG8=\x07[/]\x1b[2J"
APPROVE = "opctl actions approve configs/ratelimiter.yaml {id}"


def ticket(id_: int, invariant: str, key: str, status: str, message: str, severity: str = "critical") -> Ticket:
    return Ticket(id_, invariant, key, {}, severity, status, False, T - 120, T - 2, None, 30, message, {}, None)


def proposal(id_: int, ticket_id: int, action: str, params: dict[str, Any], status: str) -> Proposal:
    return Proposal(id_, ticket_id, action, params, "runbook", "runbook", status, None, None, T - 30, T - 30, T + 870, None)


def event(id_: int, kind: str, at: float, invariant: str, key: str, **data: Any) -> Event:
    return Event(id_, 12, invariant, key, kind, "engine", at, data)


def report(**overrides: Any) -> TickReport:
    values: dict[str, Any] = dict(
        tick=42, at=T, duration_s=0.0123,
        observations={
            "node_metrics": {"ok": True, "duration_s": 0.02,
                             "endpoint_errors": {"http://127.0.0.1:18082": "ConnectError: [Errno 111] Connection refused"}},
            "over_limit": {"ok": True, "duration_s": 0.01},
            "ready": {"ok": True, "duration_s": 0.01},
            "redis_memory": {"ok": False, "duration_s": 1.0, "error": "timeout after 1s"},
            "registry": {"ok": True, "duration_s": 0.01},
        },
        invariants={
            "check_latency_p99": {"health": "ok", "error": None, "ok": 2},
            "no_ghost_allowing": {"health": "ok", "error": None, "ok": 2},
            "no_over_admission": {"health": "ok", "error": None, "ok": 0},
            "node_heartbeat": {"health": "ok", "error": None, "ok": 2, "firing": 1},
            "node_redis_reachable": {"health": "ok", "error": None, "ok": 2},
            "policy_version_agrees": {"health": "ok", "error": None, "ok": 3},
            "redis_memory_headroom": {"health": "err", "error": "observation redis_memory failed", "unknown": 1},
        },
        mode="execute",
    )  # fmt: skip
    values.update(overrides)
    return TickReport(**values)


def cockpit(**overrides: Any) -> Cockpit:
    heartbeat = ticket(12, "node_heartbeat", "node2", "open", "node node2 (127.0.0.1:18082) is down")
    admission = ticket(11, "no_over_admission", f"default/{HOSTILE}", "verifying", f"key {HOSTILE} of policy default used 1040 of 20")
    waiting = proposal(7, 12, "deregister_node", {"node_id": "node2"}, "awaiting_approval")
    recent = (
        event(1, "refused", T - 50, "no_over_admission", "default/hot-1", proposal=5, action="reset_key", params={"policy": "default", "key": "hot-1"},
              gate="cooldown", detail="cooldown is 1m, ran 12s ago"),
        event(2, "escalated", T - 45, "redis_memory_headroom", "", reason="raise_redis_maxmemory failed and no attempt is left"),
        event(3, "verified", T - 40, "policy_version_agrees", "node3", proposal=4, action="reload_policies"),
        event(4, "succeeded", T - 35, "no_over_admission", f"default/{HOSTILE}", proposal=6, action="reset_key",
              request=f"DELETE /v1/keys/default/{HOSTILE}", status="HTTP 204", duration_s=0.0121),
        event(5, "awaiting_approval", T - 30, "node_heartbeat", "node2", proposal=7, action="deregister_node",
              params={"node_id": "node2"}, detail="mode approve: a human decides"),
    )  # fmt: skip
    values: dict[str, Any] = {
        "subject": "ratelimiter", "report": report(),
        "mode": ModeInfo("execute", "override", "observe", "cli:ann", T - 3600), "kill": None,
        "tickets": (OpenTicket(heartbeat, (waiting,)), OpenTicket(admission)), "recent": recent, "approve": APPROVE,
    }  # fmt: skip
    values.update(overrides)
    return Cockpit(**values)


def render(view: Cockpit, width: int, height: int) -> str:
    console = Console(record=True, width=width, height=height, file=open(os.devnull, "w"), color_system="truecolor")
    console.print(live_view(view, width=width, height=height))
    return console.export_text(styles=False)


@pytest.mark.parametrize(("width", "height"), [(80, 24), (160, 45)])
def test_the_live_view_matches_its_snapshot(width: int, height: int) -> None:
    text = render(cockpit(), width, height)
    snapshot = SNAPSHOTS / f"live_view_{width}x{height}.txt"
    if os.environ.get("OPCTL_UPDATE_SNAPSHOTS"):
        snapshot.write_text(text)
    assert text == snapshot.read_text(), f"the live view changed; OPCTL_UPDATE_SNAPSHOTS=1 rewrites {snapshot.name}"


@pytest.mark.parametrize(("width", "height"), [(80, 24), (160, 45)])
def test_what_an_operator_must_see_fits_and_is_never_cut(width: int, height: int) -> None:
    text = render(cockpit(), width, height)
    lines = text.splitlines()
    flat = " ".join(text.split())  # wrapped lines joined
    assert len(lines) <= height and all(len(line) <= width for line in lines), text
    assert "mode execute (set by cli:ann 2025-12-31 23:00 UTC; the config says observe)" in flat
    assert "kill switch off" in flat
    assert "opctl actions approve configs/ratelimiter.yaml 7" in text  # the exact command, on one line
    assert "#7 deregister_node(node_id=node2) for ticket #12" in text
    assert "executed reset_key #6: DELETE" in flat and "→ HTTP 204, ok in 0.012s" in flat
    row = next(line for line in lines if line.lstrip().startswith("12 "))
    assert "open" in row and "node_heartbeat" in row  # id, status, invariant: never dropped, never cut
    assert "redis_memory: failed: timeout after 1s" in flat
    assert "http://127.0.0.1:18082: ConnectError" in flat  # the failing endpoint is named
    header = next(line for line in lines if "invariant" in line and "pending" in line)
    for state in ("ok", "pending", "firing", "unknown", "error"):
        assert state in header


def test_observed_text_is_inert() -> None:
    for width, height in ((80, 24), (160, 45)):
        text = render(cockpit(), width, height)
        assert "\x1b" not in text and "\x07" not in text
        assert "\\x1b]52;c;aGVsbG8=\\x07[/]\\x1b[2J" in text.replace("\n", "").replace(" ", "")


def test_the_kill_switch_says_who_when_and_why() -> None:
    text = render(cockpit(kill={"value": "incident 42", "actor": "cli:bob", "at": T - 60}, tickets=()), 80, 24)
    assert "kill switch ON by cli:bob at 23:59:00: incident 42" in " ".join(text.split())
    assert "Open tickets: none" in text and "first seen" not in text


def test_a_leader_is_shown_once_replicas_report_one() -> None:
    assert "leader" not in render(cockpit(), 160, 45).splitlines()[0]
    assert "· leader opctl-b" in render(cockpit(leader="opctl-b"), 160, 45).splitlines()[0]


def test_states_read_zero_when_a_count_is_absent_and_an_error_message_is_not_a_count() -> None:
    invariants = {"only_ok": {"ok": 3}, "typed": {"health": "err", "error": 2, "unknown": 1, "ok": 0}}
    text = render(cockpit(report=report(invariants=invariants), tickets=(), recent=()), 160, 45)
    only_ok = next(line for line in text.splitlines() if line.lstrip().startswith("only_ok"))
    assert only_ok.split()[1:] == ["3", "0", "0", "0", "0"]
    typed = next(line for line in text.splitlines() if line.lstrip().startswith("typed"))
    assert typed.split()[1:6] == ["0", "0", "0", "1", "2"]
