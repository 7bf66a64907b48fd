"""The run loop against real parts: an HTTP server on loopback, a real Redis, a SQLite file.

Time is driven by the test (an injected clock); the I/O is real.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis

from engine.config.validate import load_config
from engine.loop import Monitor
from engine.store import Store
from tests.json_server import JsonServer
from tests.clock import Clock

CONFIG = """\
version: 1
subject: {{name: demo}}
targets:
  api: {{url: "{api}", timeout: 10s}}
  cache: {{url: "{redis}", timeout: 10s}}
interval: 1s
observations:
  nodes: {{http: {{target: api, path: /v1/nodes}}, select: body.nodes}}
  keys: {{redis: {{target: cache, command: [DBSIZE]}}}}
invariants:
  - name: node_up
    for_each: nodes
    key: item.id
    expr: item.state == "up"
    for: 2s
    keep_firing_for: 2s
    on_error: {on_error}
    severity: critical
    message: "node {{{{ item.id }}}} is {{{{ item.state }}}}"
  - name: few_keys
    expr: keys < 3
    for: 1s
store: state.db
"""



def nodes(*states: str) -> dict[str, object]:
    return {"nodes": [{"id": f"n{i}", "state": s} for i, s in enumerate(states, 1)]}


@pytest.fixture(autouse=True)
def _close_loops():
    yield
    for loop, monitor in _LOOPS.values():
        loop.run_until_complete(monitor.observer.aclose())
        monitor.store.close()
        loop.close()
    _LOOPS.clear()


@pytest.fixture
def server() -> JsonServer:
    with JsonServer() as srv:
        srv.set("/v1/nodes", nodes("up", "up"))
        yield srv


def make_monitor(tmp_path: Path, server: JsonServer, redis_url: str, clock: Clock, on_error: str = "keep") -> Monitor:
    path = tmp_path / "demo.yaml"
    path.write_text(CONFIG.format(api=server.url, redis=redis_url, on_error=on_error))
    loaded = load_config(path, env={})
    return Monitor(loaded, store=Store(loaded.store_path), clock=clock)


_LOOPS: dict[int, tuple[asyncio.AbstractEventLoop, Monitor]] = {}


def tick(monitor: Monitor, clock: Clock, advance: float = 1.0):
    """One tick on the monitor's own event loop (its clients live on one loop, as in `opctl run`)."""
    loop, _ = _LOOPS.setdefault(id(monitor), (asyncio.new_event_loop(), monitor))
    report = loop.run_until_complete(monitor.tick())
    clock.now += advance
    return report


def kinds(store: Store, invariant: str) -> list[str]:
    return [e.kind for e in store.events(limit=10_000) if e.invariant == invariant and e.kind in ("pending", "firing", "resolved", "cleared")]


def test_violation_pends_fires_once_and_resolves(tmp_path: Path, server: JsonServer, redis_url: str) -> None:
    clock = Clock()
    monitor = make_monitor(tmp_path, server, redis_url, clock)
    report = tick(monitor, clock)
    assert report.invariants["node_up"]["ok"] == 2 and not report.opened

    server.set("/v1/nodes", nodes("up", "down"))
    report = tick(monitor, clock)  # t=1: violation begins
    assert report.invariants["node_up"]["pending"] == 1 and not report.opened
    report = tick(monitor, clock)  # t=2: 1 s into `for: 2s`
    assert report.invariants["node_up"]["pending"] == 1 and not report.opened
    report = tick(monitor, clock)  # t=3: `for` elapsed
    assert report.invariants["node_up"]["firing"] == 1
    [opened] = report.opened
    assert (opened["invariant"], opened["key"], opened["message"]) == ("node_up", "n2", "node n2 is down")
    for _ in range(3):
        assert tick(monitor, clock).opened == []
    store = monitor.store
    [ticket] = store.tickets()
    assert ticket.status == "open" and ticket.occurrences >= 4
    assert ticket.snapshot["nodes"] == nodes("up", "down")["nodes"]

    server.set("/v1/nodes", nodes("up", "up"))
    assert tick(monitor, clock).resolved == []  # healthy, keep_firing_for not elapsed
    assert tick(monitor, clock).resolved == []
    report = tick(monitor, clock)
    assert [t["id"] for t in report.resolved] == [ticket.id]
    assert store.ticket(ticket.id).status == "resolved"
    assert kinds(store, "node_up") == ["pending", "firing", "resolved"]
    assert len(store.tickets()) == 1


def test_cluster_wide_invariant_on_real_redis(tmp_path: Path, server: JsonServer, redis_url: str) -> None:
    clock = Clock()
    monitor = make_monitor(tmp_path, server, redis_url, clock)
    client = redis.Redis.from_url(redis_url)
    client.mset({"a": 1, "b": 2, "c": 3})
    reports = [tick(monitor, clock) for _ in range(3)]
    assert reports[0].invariants["few_keys"]["pending"] == 1
    assert [t["invariant"] for t in reports[1].opened] == ["few_keys"]
    client.delete("a", "b", "c")
    client.close()
    assert [t["invariant"] for t in tick(monitor, clock).resolved] == ["few_keys"]


def _fire(monitor: Monitor, server: JsonServer, clock: Clock) -> int:
    server.set("/v1/nodes", nodes("up", "down"))
    for _ in range(4):
        tick(monitor, clock)
    [ticket] = monitor.store.tickets(status="open")
    return ticket.id


def test_dead_endpoint_keeps_ticket_open_under_keep(tmp_path: Path, server: JsonServer, redis_url: str) -> None:
    clock = Clock()
    monitor = make_monitor(tmp_path, server, redis_url, clock, on_error="keep")
    ticket_id = _fire(monitor, server, clock)
    server.stop()
    for _ in range(5):
        report = tick(monitor, clock)
        assert report.observations["nodes"]["ok"] is False
        assert "127.0.0.1" in report.observations["nodes"]["error"]
        # nothing to judge this tick: both entities are unknown; n2 holds its firing status
        assert report.invariants["node_up"]["counts"] == {"ok": 0, "pending": 0, "firing": 0, "unknown": 2, "error": 0}
        assert monitor.states[("node_up", "n2")].status == "firing"
        assert report.resolved == []
    assert monitor.store.ticket(ticket_id).status == "open"
    errors = [e for e in monitor.store.events(limit=10_000) if e.kind == "observation_error"]
    assert errors and errors[0].data["observation"] == "nodes"


def test_dead_endpoint_under_ok_resolves_and_under_firing_opens(tmp_path: Path, redis_url: str) -> None:
    clock = Clock()
    with JsonServer() as srv:
        srv.set("/v1/nodes", nodes("up", "down"))
        (tmp_path / "ok").mkdir()
        monitor = make_monitor(tmp_path / "ok", srv, redis_url, clock, on_error="ok")
        ticket_id = _fire(monitor, srv, clock)
        srv.stop()
        resolved = [t["id"] for _ in range(3) for t in tick(monitor, clock).resolved]
        assert resolved == [ticket_id]  # documented: `ok` treats a failed observation as healthy

    clock = Clock()
    with JsonServer() as srv:
        srv.set("/v1/nodes", nodes("up", "up"))
        (tmp_path / "firing").mkdir()
        monitor = make_monitor(tmp_path / "firing", srv, redis_url, clock, on_error="firing")
        tick(monitor, clock)
        srv.stop()
        opened = [t for _ in range(4) for t in tick(monitor, clock).opened]
        # `firing` treats a failed observation as a violation of every entity it knew; the dead
        # target itself is target_up's ticket
        assert sorted(t["key"] for t in opened if t["invariant"] != "target_up") == ["n1", "n2"]
        assert [t["key"] for t in opened if t["invariant"] == "target_up"] == ["api"]
