"""A ticket's message template sees every name validate lets it use: the observations, `prev`,
`vars`, `now`, `item`, `key`, `invariant`, `severity` and `labels` (validate once accepted
`vars` and `prev` in messages that then failed on every ticket). Through the real Monitor, a
real loopback HTTP server and a real SQLite store."""

from __future__ import annotations

import asyncio
from pathlib import Path

from engine.config.validate import load_config
from engine.documents import validate_paths
from engine.loop import Monitor
from engine.store import Store
from tests.clock import Clock
from tests.json_server import JsonServer

CONFIG = """\
version: 1
subject: {{name: msg}}
targets:
  api: {{url: "{url}"}}
interval: 2s
vars:
  most: {{type: int, value: 2, description: Nodes allowed.}}
observations:
  nodes: {{http: {{target: api, path: /nodes}}, select: body.nodes}}
invariants:
  - name: few_nodes
    severity: warning
    labels: {{team: edge}}
    for_each: "[nodes.size()]"
    key: "'all'"
    expr: item <= vars.most
    for: 2s
    message: >-
      {{{{ invariant }}}}/{{{{ key }}}} ({{{{ severity }}}}, team {{{{ labels.team }}}}): {{{{ item }}}} nodes
      ({{{{ nodes | join(',') }}}}), {{{{ prev.nodes | length }}}} a tick ago, at most {{{{ vars.most }}}}, at {{{{ now | int }}}}
store: state.db
"""


def test_a_message_renders_every_name_validate_accepts(tmp_path: Path) -> None:
    with JsonServer() as api:
        api.set("/nodes", {"nodes": ["a", "b", "c"]})
        path = tmp_path / "msg.yaml"
        path.write_text(CONFIG.format(url=api.url))
        assert [p for p in validate_paths([path], env={}) if p.severity == "error"] == []
        loaded = load_config(path, env={})
        clock = Clock(1000.0)
        monitor = Monitor(loaded, store=Store(loaded.store_path), clock=clock)

        async def ticks() -> None:
            for _ in range(2):
                await monitor.tick()
                clock.now += 2
            await monitor.aclose()

        asyncio.run(ticks())
        [ticket] = monitor.store.tickets()
        assert ticket.message == "few_nodes/all (warning, team edge): 3 nodes (a,b,c), 3 a tick ago, at most 2, at 1002"
