"""Webhook notifications with a real loopback receiver, a real SQLite store and the Monitor on
an injected clock: the HMAC verifies, a 5xx is retried until one delivery is accepted, a dead
receiver never slows a tick, and undelivered notifications are delivered after a restart, once."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.config.validate import load_config
from engine.loop import Monitor
from engine.notify.dispatch import backoff
from engine.store import Store
from tests.json_server import JsonServer
from tests.notify.receiver import Receiver
from tests.clock import Clock

SECRET = "hook-secret-42"

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
  - name: chatops
    webhook: {{url: "{hook}", secret: "${{HOOK_SECRET}}", format: {format}, timeout: {timeout}}}
    events: [opened, resolved, approval_needed, executed, escalated, kill_switch]
mode: observe
store: state.db
"""



@pytest.fixture
def api() -> Iterator[JsonServer]:
    with JsonServer() as server:
        server.set("/nodes", {"nodes": [{"id": "n1", "up": False}]})
        yield server


def monitor_for(tmp_path: Path, api: JsonServer, hook: str, clock: Clock, *, fmt: str = "json", timeout: str = "2s") -> Monitor:
    config = tmp_path / "lab.yaml"
    config.write_text(CONFIG.format(api=api.url, hook=hook, format=fmt, timeout=timeout))
    loaded = load_config(config, env={"HOOK_SECRET": SECRET})
    return Monitor(loaded, store=Store(loaded.store_path), clock=clock)


def tick(monitor: Monitor, clock: Clock, count: int = 1) -> list[float]:
    async def go() -> list[float]:
        durations = []
        for _ in range(count):
            durations.append((await monitor.tick()).duration_s)
            clock.now += monitor.config.interval
        return durations

    return asyncio.run(go())


def test_the_opened_notification_is_signed_and_verifies(tmp_path: Path, api: JsonServer) -> None:
    with Receiver() as receiver:
        clock = Clock()
        monitor = monitor_for(tmp_path, api, receiver.url, clock)
        tick(monitor, clock)
        assert monitor.notifier is not None
        monitor.notifier.deliver_due(clock.now)
        [(headers, body, status)] = receiver.requests
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert headers["X-Opctl-Signature"] == expected and headers["X-Opctl-Timestamp"].isdigit()
        payload = json.loads(body)
        assert payload["event"] == "opened" and payload["subject"] == "lab" and payload["id"].startswith("lab:")
        assert payload["incident"]["id"] >= 1 and [t["invariant"] for t in payload["tickets"]] == ["node_up"]
        assert SECRET not in body.decode()
        [ticket] = monitor.store.tickets()
        [delivered] = [e for e in monitor.store.events(ticket.id) if e.kind == "notification"]
        assert delivered.data["status"] == "delivered" and delivered.data["receiver"] == "chatops"
        monitor.notifier.stop()


def test_slack_format_sends_text_and_blocks(tmp_path: Path, api: JsonServer) -> None:
    with Receiver() as receiver:
        clock = Clock()
        monitor = monitor_for(tmp_path, api, receiver.url, clock, fmt="slack")
        tick(monitor, clock)
        assert monitor.notifier is not None
        monitor.notifier.deliver_due(clock.now)
        [(_, body, _)] = receiver.requests
        payload = json.loads(body)
        assert "node n1 is down" in payload["text"] and payload["blocks"][0]["type"] == "section"
        monitor.notifier.stop()


def test_a_5xx_is_retried_with_backoff_until_exactly_one_delivery_is_accepted(tmp_path: Path, api: JsonServer) -> None:
    with Receiver(statuses=[503, 502]) as receiver:
        clock = Clock()
        monitor = monitor_for(tmp_path, api, receiver.url, clock)
        tick(monitor, clock)
        notifier = monitor.notifier
        assert notifier is not None
        start = clock.now
        notifier.deliver_due(start)
        notifier.deliver_due(start + backoff(1) - 0.01)  # not due yet: no request
        assert len(receiver.requests) == 1
        notifier.deliver_due(start + backoff(1))
        notifier.deliver_due(start + backoff(1) + backoff(2))
        notifier.deliver_due(start + 600)  # nothing left to send
        assert [status for _, _, status in receiver.requests] == [503, 502, 200]
        assert len(receiver.accepted()) == 1
        [item] = monitor.store.notifications(receiver="chatops")
        assert (item.status, item.attempts) == ("delivered", 3)
        kinds = [e.data["status"] for e in monitor.store.events(limit=10_000) if e.kind == "notification"]
        assert kinds == ["retry", "retry", "delivered"]
        notifier.stop()


def test_a_dead_receiver_never_slows_a_tick_and_restart_delivers_once(tmp_path: Path, api: JsonServer) -> None:
    """A receiver that accepts connections and never answers: each attempt costs the notifier
    thread its timeout (2s); every tick stays far below it. After a restart with the receiver
    back, the undelivered notification is delivered, once."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # never accepted: requests hang until the client's timeout
    dead = f"http://127.0.0.1:{silent.getsockname()[1]}/hook"
    clock = Clock()
    monitor = monitor_for(tmp_path, api, dead, clock, timeout="2s")
    assert monitor.notifier is not None
    monitor.notifier.start()
    durations = tick(monitor, clock, 5)
    api.set("/nodes", {"nodes": [{"id": "n1", "up": True}]})
    durations += tick(monitor, clock, 2)  # resolved: a second notification queued
    monitor.notifier.stop()
    silent.close()
    assert max(durations) < 2.0, durations  # the receiver's timeout: no tick waited for it
    pending = [n for n in monitor.store.notifications() if n.status == "pending"]
    assert sorted(n.event for n in pending) == ["opened", "resolved"]
    monitor.store.close()

    with Receiver() as receiver:
        config = (tmp_path / "lab.yaml")
        config.write_text(config.read_text().replace(dead, receiver.url))
        loaded = load_config(config, env={"HOOK_SECRET": SECRET})
        again = Monitor(loaded, store=Store(loaded.store_path), clock=clock)
        assert again.notifier is not None
        later = clock.now + 120
        again.notifier.deliver_due(later)
        again.notifier.deliver_due(later + 600)
        ids = [json.loads(body)["id"] for _, body, _ in receiver.requests]
        assert sorted(json.loads(body)["event"] for _, body, _ in receiver.requests) == ["opened", "resolved"]
        assert len(ids) == len(set(ids)) == 2  # each once
        again.notifier.stop()


def test_replicas_sharing_a_store_deliver_each_notification_once_from_the_leader(tmp_path: Path, api: JsonServer) -> None:
    with Receiver() as receiver:
        clock = Clock()
        config = tmp_path / "lab.yaml"
        config.write_text(CONFIG.format(api=api.url, hook=receiver.url, format="json", timeout="2s"))
        loaded = load_config(config, env={"HOOK_SECRET": SECRET})
        leader = Monitor(loaded, store=Store(loaded.store_path), clock=clock, replica="a")
        follower = Monitor(loaded, store=Store(loaded.store_path), clock=clock, replica="b")
        asyncio.run(leader.tick())  # takes the lease, opens the ticket, queues `opened`
        asyncio.run(follower.tick())  # observes and evaluates only
        assert leader.lease is not None and leader.lease.leading and follower.lease is not None and not follower.lease.leading
        assert leader.notifier is not None and follower.notifier is not None
        follower.notifier.deliver_due(clock.now)  # the shared outbox is not the follower's to send
        assert receiver.requests == []
        leader.notifier.deliver_due(clock.now)
        follower.notifier.deliver_due(clock.now)
        assert [json.loads(body)["event"] for _, body, _ in receiver.requests] == ["opened"]
        for monitor in (leader, follower):
            assert monitor.notifier is not None
            monitor.notifier.stop()
