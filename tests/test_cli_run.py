"""`opctl run` and `opctl tickets` as a user runs them: real processes, real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from engine.store import Store
from tests.json_server import JsonServer
from tests.ports import free_port
from tests.promtool import metrics_lint, requires_promtool
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[1]

CONFIG = """\
version: 1
subject: {{name: demo}}
targets:
  # these tests are about node_up: a slow answer on a busy machine must not open target_up
  api: {{url: "{api}", timeout: 500ms, down_after: 1h}}
interval: 200ms
observations:
  nodes: {{http: {{target: api, path: /v1/nodes}}, select: body.nodes}}
invariants:
  - name: node_up
    for_each: nodes
    key: item.id
    expr: item.state == "up"
    for: {hold}
    severity: critical
    message: "node {{{{ item.id }}}} is {{{{ item.state }}}}"
store: state.db
"""


def opctl(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True, text=True, cwd=ROOT, timeout=60, **kwargs)  # type: ignore[call-overload]


def start_run(config: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "engine", "run", str(config), "--json", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )


def open_tickets(db: Path) -> list[object]:
    if not db.exists():
        return []
    with Store(db) as store:
        return store.tickets(status="open")


@pytest.fixture
def api() -> Iterator[JsonServer]:
    with JsonServer() as srv:
        srv.set("/v1/nodes", {"nodes": [{"id": "n1", "state": "down"}]})
        yield srv


def test_sigkill_mid_episode_then_restart_continues_the_same_ticket(tmp_path: Path, api: JsonServer) -> None:
    config = tmp_path / "demo.yaml"
    config.write_text(CONFIG.format(api=api.url, hold="500ms"))
    db = tmp_path / "state.db"
    first = start_run(config)
    try:
        [ticket] = wait_for(lambda: open_tickets(db))
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    second = start_run(config)
    try:
        # Several ticks later the entity is still firing: the same ticket goes on, none is added.
        wait_for(lambda: (t := Store(db).ticket(ticket.id)) is not None and t.occurrences >= ticket.occurrences + 3)
    finally:
        second.send_signal(signal.SIGTERM)
        out, _ = second.communicate(timeout=20)
    assert second.returncode == 0
    with Store(db) as store:
        assert [t.id for t in store.tickets()] == [ticket.id]
        assert [e.kind for e in store.events(limit=10_000)
                if e.kind in ("pending", "firing") and e.invariant == "node_up"] == ["pending", "firing"]
    for line in out.splitlines():
        assert json.loads(line)["tickets_opened"] == []


def test_pending_timer_survives_a_restart(tmp_path: Path, api: JsonServer) -> None:
    config = tmp_path / "demo.yaml"
    # observations may take 10 s: a busy machine must not turn a sample unknown
    config.write_text(CONFIG.format(api=api.url, hold="3s").replace("timeout: 500ms", "timeout: 10s"))
    db = tmp_path / "state.db"
    first = start_run(config)
    try:
        # node_up's own pending (a slow answer on a busy machine may make target_up pending first)
        wait_for(lambda: db.exists() and any(e.kind == "pending" and e.invariant == "node_up" for e in Store(db).events()))
        began = time.time()
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    second = start_run(config)
    try:
        [ticket] = wait_for(lambda: open_tickets(db), timeout=30)
    finally:
        second.send_signal(signal.SIGTERM)
        second.communicate(timeout=20)
    with Store(db) as store:
        # node_up's own events (a slow answer on a busy machine may also make target_up pending)
        [pending] = [e for e in store.events() if e.kind == "pending" and e.invariant == "node_up"]
        [firing] = [e for e in store.events() if e.kind == "firing" and e.invariant == "node_up"]
    # `for` counts from the first pending sample, before the restart, not from the restart.
    assert pending.at <= began
    assert firing.at - pending.at >= 3.0
    assert ticket.first_seen == firing.at


def test_sigterm_stops_after_the_current_tick(tmp_path: Path, api: JsonServer) -> None:
    config = tmp_path / "demo.yaml"
    config.write_text(CONFIG.format(api=api.url, hold="10s"))
    proc = start_run(config)
    assert proc.stdout is not None
    first_line = proc.stdout.readline()
    assert json.loads(first_line)["tick"] == 1
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    for line in out.splitlines():
        json.loads(line)  # every line is a whole JSON object: no tick cut in half


@requires_promtool
def test_metrics_port_serves_what_promtool_accepts(tmp_path: Path, api: JsonServer) -> None:
    config = tmp_path / "demo.yaml"
    config.write_text(CONFIG.format(api=api.url, hold="200ms"))
    port = free_port()
    proc = start_run(config, "--metrics-port", str(port))
    try:
        # Once a ticket is open every family has samples (ticks, the tick histogram, tickets).
        text = wait_for(lambda: (t := _metrics(port)) and "opctl_tickets_opened_total{" in t and t)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    assert metrics_lint(text) == []


def _metrics(port: int) -> str | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1).text
    except httpx.TransportError:
        return None


def test_run_shipped_config_with_nothing_listening(tmp_path: Path) -> None:
    env = {**os.environ, "OPCTL_STORE": str(tmp_path / "rl.db")}
    result = opctl("run", "configs/ratelimiter.yaml", "--once", "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    [line] = result.stdout.splitlines()
    tick = json.loads(line)
    assert {name for name, o in tick["observations"].items() if not o["ok"]} == set(tick["observations"])
    assert "connection refused" in tick["observations"]["registry"]["error"]
    assert tick["tickets_opened"] == []
    declared = {name: inv for name, inv in tick["invariants"].items() if name != "target_up"}
    assert len(declared) == 7 and all(inv["health"] == "err" for inv in declared.values())
    # nothing could be judged: every invariant is unknown, none is ok; each target is pending down
    assert {inv["state"] for inv in declared.values()} == {"unknown"}
    assert tick["invariants"]["target_up"]["state"] == "pending"
    assert tick["invariants"]["target_up"]["counts"]["pending"] == 3
    # nothing to judge: the cluster-wide invariant is unknown, by (its empty) key, with the reason
    headroom = tick["invariants"]["redis_memory_headroom"]
    assert headroom["counts"] == {"ok": 0, "pending": 0, "firing": 0, "unknown": 1, "error": 0}
    assert "redis_memory" in headroom["entities"]["unknown"]["keys"][""]
    assert headroom["entities"]["error"] == {"keys": {}, "more": 0}


def test_run_bad_config_is_a_message_not_a_traceback(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("version: 1\nsubject: {name: x}\n")
    result = opctl("run", str(config), "--once")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "missing required key 'targets'" in result.stderr
    result = opctl("run", str(config), "--interval", "soon")
    assert result.returncode == 2 and "soon" in result.stderr


def test_tickets_commands(tmp_path: Path, api: JsonServer) -> None:
    config = tmp_path / "demo.yaml"
    # one tick must see the node: a busy machine must not turn that sample unknown under 500 ms
    config.write_text(CONFIG.format(api=api.url, hold="0s").replace("timeout: 500ms", "timeout: 10s"))
    assert opctl("run", str(config), "--once", "--json").returncode == 0
    listed = json.loads(opctl("tickets", "list", str(config), "--json").stdout)
    assert [(t["invariant"], t["key"], t["status"]) for t in listed] == [("node_up", "n1", "open")]
    ticket_id = str(listed[0]["id"])

    assert opctl("tickets", "hold", str(config), ticket_id, "--reason", "investigating").returncode == 0
    api.set("/v1/nodes", {"nodes": [{"id": "n1", "state": "up"}]})
    assert opctl("run", str(config), "--once", "--json").returncode == 0
    shown = json.loads(opctl("tickets", "show", str(config), ticket_id, "--json").stdout)
    assert (shown["status"], shown["held"]) == ("open", True)  # held: not auto-resolved

    assert opctl("tickets", "unhold", str(config), ticket_id).returncode == 0
    result = opctl("tickets", "resolve", str(config), ticket_id, "--reason", "fixed by hand")
    assert result.returncode == 0 and "resolved" in result.stdout
    shown = json.loads(opctl("tickets", "show", str(config), ticket_id, "--json").stdout)
    kinds = [e["kind"] for e in shown["events"]]
    assert kinds[0] == "firing" and {"hold", "unhold", "resolved"} <= set(kinds), shown["events"]
    assert any(e["actor"].startswith("cli:") for e in shown["events"])

    text = opctl("tickets", "show", str(config), ticket_id)
    assert text.returncode == 0 and "Timeline" in text.stdout
    assert opctl("tickets", "list", str(config), "--status", "open", "--json").stdout.strip() == "[]"
    missing = opctl("tickets", "show", str(config), "999")
    assert missing.returncode == 1 and "no ticket #999" in missing.stderr and "Traceback" not in missing.stderr


def test_labelled_counters_are_exported_at_0_before_any_event(tmp_path: Path, api: JsonServer) -> None:
    """rate() and increase() only see an event whose series existed before it (at 0)."""
    api.set("/v1/nodes", {"nodes": [{"id": "n1", "state": "up"}]})
    config = tmp_path / "demo.yaml"
    # observations may take 10 s: on a busy machine a timeout would count an observation error
    config.write_text(CONFIG.format(api=api.url, hold="10s").replace("timeout: 500ms", "timeout: 10s"))
    port = free_port()
    proc = start_run(config, "--metrics-port", str(port))
    try:
        text = wait_for(lambda: (t := _metrics(port)) and "opctl_invariant_state{" in t and t)  # a tick ran
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    for sample in (
        'opctl_tickets_opened_total{invariant="node_up"} 0.0',
        'opctl_tickets_opened_total{invariant="target_up"} 0.0',
        'opctl_tickets_resolved_total{invariant="node_up"} 0.0',
        'opctl_tickets_resolved_total{invariant="target_up"} 0.0',
        'opctl_observation_errors_total{observation="nodes"} 0.0',
        'opctl_invariant_state{invariant="node_up",state="ok"} 1.0',
        'opctl_invariant_state{invariant="node_up",state="unknown"} 0.0',
    ):
        assert sample in text, sample
