"""Approve mode end to end: `approval_needed` reaches a real loopback webhook with the exact
approve command; running that command from another process executes the action on the next
tick (a real HTTP API takes the request)."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import yaml

from engine.config.validate import load_config
from engine.loop import Monitor
from engine.store import Store
from tests.act.act_support import config_data, nodes
from tests.json_server import JsonServer
from tests.notify.receiver import Receiver
from tests.clock import Clock

ROOT = Path(__file__).resolve().parents[2]



def test_approval_needed_reaches_the_webhook_and_its_command_executes_on_the_next_tick(tmp_path: Path) -> None:
    with JsonServer() as api, Receiver() as receiver:
        api.set("/v1/nodes", nodes("n2"))
        api.set("/v1/nodes/n2", {"deleted": "n2"})
        data = config_data(api.url, diagnosis={"provider": "runbook"}, mode="approve",
                           notify=[{"name": "chatops", "webhook": {"url": receiver.url}, "events": ["approval_needed", "executed"]}])
        config = tmp_path / "opctl.yaml"
        config.write_text(yaml.safe_dump(data, sort_keys=False))
        env = {"API_TOKEN": "t0ken"}
        loaded = load_config(config, env=env)
        clock = Clock(time.time())  # the approving process reads the real clock (approval_ttl)
        monitor = Monitor(loaded, store=Store(loaded.store_path), clock=clock)
        assert monitor.notifier is not None

        async def tick() -> None:
            await monitor.tick()
            clock.now += monitor.config.interval

        asyncio.run(tick())
        monitor.notifier.deliver_due(clock.now)
        [(_, body, _)] = receiver.requests
        payload = json.loads(body)
        assert payload["event"] == "approval_needed" and payload["proposal"]["action"] == "deregister_node"
        command = payload["approve"]
        assert command == f"opctl actions approve {shlex.quote(str(config.resolve()))} {payload['proposal']['id']}"

        argv = shlex.split(command)
        assert argv[:3] == ["opctl", "actions", "approve"]
        approved = subprocess.run([sys.executable, "-m", "engine", *argv[1:]], cwd=ROOT, capture_output=True, text=True,
                                  env={**os.environ, **env}, timeout=60)
        assert approved.returncode == 0, approved.stderr
        assert [r for r in api.requests if r[0] == "DELETE"] == []
        asyncio.run(tick())  # the next tick runs it, after every gate again
        assert [r[1] for r in api.requests if r[0] == "DELETE"] == ["/v1/nodes/n2"]
        monitor.notifier.deliver_due(clock.now)
        assert [json.loads(b)["event"] for _, b, _ in receiver.requests] == ["approval_needed", "executed"]
        monitor.notifier.stop()
