"""A real `opctl serve` on a free loopback port, over a store a real Monitor filled.

`filled_store(tmp_path, server)` ticks the engine (mode approve, runbook diagnosis) against a
JsonServer whose registry has two dead nodes, so the store holds two open tickets, each with a
diagnosis and a `deregister_node` proposal awaiting approval. `Console.start(...)` runs
`opctl serve` as a subprocess and waits until its API answers.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from engine.loop import Monitor
from engine.store import Store
from tests.act.act_support import SECRET, config_data, nodes, write_config
from tests.json_server import JsonServer
from tests.ports import free_port
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
APPROVER = "approver-token-0123456789"
VIEWER = "viewer-token-0123456789ab"
TOKENS = f"ann:{APPROVER}:approver,vic:{VIEWER}:viewer"
# an observed value carrying a secret and a script: the API redacts the one, the UI shows the other as text
PAYLOAD = f"<script>window.pwned=1</script> token={SECRET}"


def registry() -> dict[str, object]:
    found = nodes("n2", "n3")
    found["nodes"][1]["note"] = PAYLOAD  # type: ignore[index]
    return found


def filled_store(tmp_path: Path, server: JsonServer, **overrides: object) -> Path:
    """The config path; its store (tmp_path/state.db) holds two tickets awaiting approval."""
    server.set("/v1/nodes", registry())
    data = config_data(server.url, diagnosis={"provider": "runbook"}, mode="approve", **overrides)
    loaded = write_config(tmp_path, data)
    store = Store(loaded.store_path)
    monitor = Monitor(loaded, store=store)

    async def ticks() -> None:
        try:
            for _ in range(3):
                await monitor.tick()
                if len(store.proposals(status="awaiting_approval")) == 2:
                    return
            raise AssertionError(f"no proposals awaiting approval: {store.proposals()}")
        finally:
            await monitor.aclose()

    try:
        asyncio.run(ticks())
    finally:
        store.close()
    return tmp_path / "opctl.yaml"


@dataclass
class Console:
    url: str
    process: subprocess.Popen[str]
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10))

    @classmethod
    def start(cls, config: Path, *, tokens: str | None = TOKENS, host: str = "127.0.0.1") -> Console:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if k != "OPCTL_SERVE_TOKENS"}
        env["API_TOKEN"] = SECRET
        if tokens is not None:
            env["OPCTL_SERVE_TOKENS"] = tokens
        process = subprocess.Popen(
            [sys.executable, "-m", "engine", "serve", str(config), "--host", host, "--port", str(port)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        console = cls(f"http://{host}:{port}", process)
        try:
            wait_for(console._answers, timeout=30)
        except AssertionError:
            console.stop()
            raise AssertionError(f"opctl serve did not answer: {process.stderr.read() if process.stderr else ''}") from None
        return console

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"opctl serve exited {self.process.returncode}: {self.process.stderr.read()}")  # type: ignore[union-attr]
        try:
            return self.http.get(f"{self.url}/api/v1/openapi.json").status_code == 200
        except httpx.TransportError:
            return False

    def call(
        self, method: str, path: str, token: str | None = APPROVER, headers: dict[str, str] | None = None, **kwargs: object
    ) -> httpx.Response:
        headers = {**({"Authorization": f"Bearer {token}"} if token is not None else {}), **(headers or {})}
        return self.http.request(method, f"{self.url}{path}", headers=headers, **kwargs)  # type: ignore[arg-type]

    def stop(self) -> None:
        self.http.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


