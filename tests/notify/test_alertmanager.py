"""Incidents as alerts in a real Alertmanager: the labels and annotations, re-sent while firing,
resolved with endsAt when the ticket resolves; Alertmanager killed during an incident and
started again gets the alert once it is back, and no tick waited for it; Watchdog always fires."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.config.validate import load_config
from engine.loop import Monitor
from engine.store import Store
from tests.json_server import JsonServer
from tests.notify.alertmanager_server import Alertmanager, requires_alertmanager
from tests.waiting import wait_for
from tests.clock import Clock

pytestmark = requires_alertmanager

CONFIG = """\
version: 1
subject: {{name: lab}}
targets:
  api: {{url: "{api}", timeout: 1s}}
interval: 2s
observations:
  nodes: {{http: {{target: api, path: /nodes}}, select: body.nodes}}
invariants:
  - name: node_up
    severity: critical
    for_each: nodes
    key: item.id
    expr: item.up
    message: "node {{{{ item.id }}}} is down"
diagnosis: {{provider: runbook}}
incidents: {{group_wait: 0s}}
notify:
  - name: oncall
    alertmanager: {{url: "${{ALERTMANAGER_URL:-http://127.0.0.1:9093}}", timeout: {timeout}, resend: 10s}}
mode: observe
store: state.db
"""



@pytest.fixture
def api() -> Iterator[JsonServer]:
    with JsonServer() as server:
        server.set("/nodes", {"nodes": [{"id": "n1", "up": False}]})
        yield server


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[Alertmanager]:
    server = Alertmanager(tmp_path / "am").start()
    try:
        yield server
    finally:
        server.stop()


def monitor_for(tmp_path: Path, api: JsonServer, url: str, clock: Clock, timeout: str = "2s") -> Monitor:
    config = tmp_path / "lab.yaml"
    config.write_text(CONFIG.format(api=api.url, timeout=timeout))
    loaded = load_config(config, env={"ALERTMANAGER_URL": url})
    return Monitor(loaded, store=Store(loaded.store_path), clock=clock)


def tick(monitor: Monitor, clock: Clock, count: int = 1) -> list[float]:
    async def go() -> list[float]:
        out = []
        for _ in range(count):
            out.append((await monitor.tick()).duration_s)
            clock.now += monitor.config.interval
        return out

    return asyncio.run(go())


def node_alert(server: Alertmanager, **params: str) -> dict | None:  # type: ignore[type-arg]
    found = [a for a in server.alerts(**params) if a["labels"].get("alertname") == "node_up"]
    return found[0] if found else None


def test_an_incident_is_an_alert_resent_while_firing_and_resolved_with_its_ticket(
    tmp_path: Path, api: JsonServer, alertmanager: Alertmanager
) -> None:
    import time

    clock = Clock(time.time())  # Alertmanager judges startsAt/endsAt against its own clock
    monitor = monitor_for(tmp_path, api, alertmanager.url, clock)
    notifier = monitor.notifier
    assert notifier is not None
    tick(monitor, clock)
    notifier.deliver_due(clock.now)
    alert = wait_for(lambda: node_alert(alertmanager))
    [ticket] = monitor.store.tickets()
    assert alert["labels"] == {"alertname": "node_up", "subject": "lab", "key": "n1", "severity": "critical",
                               "incident": str(ticket.incident_id)}
    assert alert["annotations"]["summary"] == "node n1 is down"
    assert "diagnosis" in alert["annotations"]
    watchdog = [a for a in alertmanager.alerts() if a["labels"]["alertname"] == "Watchdog"]
    assert watchdog and watchdog[0]["status"]["state"] == "active"
    first_update = alert["updatedAt"]

    clock.now += 10  # the resend period: sent again while firing
    notifier.deliver_due(clock.now)
    wait_for(lambda: (a := node_alert(alertmanager)) is not None and a["updatedAt"] != first_update)

    api.set("/nodes", {"nodes": [{"id": "n1", "up": True}]})
    tick(monitor, clock)
    notifier.deliver_due(clock.now)
    assert monitor.store.incidents()[0].resolved_at is not None
    # resolved: endsAt is now, so Alertmanager no longer lists it as active
    wait_for(lambda: node_alert(alertmanager, active="true") is None)
    kinds = [(e.data["event"], e.data["status"]) for e in monitor.store.events(limit=10_000) if e.kind == "notification"]
    assert kinds == [("firing", "delivered"), ("resolved", "delivered")]
    notifier.stop()


def test_alertmanager_down_during_an_incident_gets_the_alert_when_back_and_no_tick_waited(
    tmp_path: Path, api: JsonServer, alertmanager: Alertmanager
) -> None:
    import time

    clock = Clock(time.time())
    monitor = monitor_for(tmp_path, api, alertmanager.url, clock, timeout="2s")
    notifier = monitor.notifier
    assert notifier is not None
    alertmanager.stop()
    notifier.start()  # the real thread: it tries, fails, tries again, off the tick
    durations = tick(monitor, clock, 4)
    assert node_alert_or_none(alertmanager) is None
    alertmanager.start()
    clock.now += 1
    wait_for(lambda: node_alert(alertmanager), timeout=30)
    durations += tick(monitor, clock, 2)
    notifier.stop()
    assert max(durations) < 2.0, durations  # the receiver's timeout: no tick waited for Alertmanager


def node_alert_or_none(server: Alertmanager) -> object:
    try:
        return node_alert(server)
    except Exception:  # down: nothing to ask
        return None
