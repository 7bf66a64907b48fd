"""Start real `python -m ratelimiter_service` node processes on free loopback ports for tests.

    with NodeGroup(redis_url, count=3, env={"RATELIMITER_TOKEN": "t"}) as nodes:
        httpx.post(nodes[0].url + "/v1/check", json={"key": "k"})
        nodes[1].kill()                      # SIGKILL, what a crash looks like

`in_process_node(redis_url, **settings)` runs one node app inside the test's event loop instead.

`clock_offsets` runs nodes under libfaketime (Debian package `faketime`), which shifts the
process's wall clock for real: `clock_offsets=["+0", "+7m", "-5m"]`.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from tests.ports import free_port
from ratelimiter_service.app import create_app
from ratelimiter_service.settings import Settings

LIBFAKETIME_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
)
START_TIMEOUT_S = 30.0
# The Redis deadline of test nodes unless a test gives its own: a test that expects exact
# decisions must not fall into the failure mode because a busy machine paused it for 50 ms.
TEST_REDIS_DEADLINE_MS = 2000


def find_libfaketime() -> str | None:
    for candidate in LIBFAKETIME_CANDIDATES:
        if Path(candidate).exists():
            return candidate
    return None


class NodeProcess:
    """One node process; `url` is its HTTP base URL."""

    def __init__(self, node_id: str, env: Mapping[str, str], log_path: Path) -> None:
        self.node_id = node_id
        self.env = dict(env)
        self.log_path = log_path
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def launch(self) -> None:
        self.port = free_port()
        env = {**self.env, "RATELIMITER_PORT": str(self.port), "RATELIMITER_HOST": "127.0.0.1"}
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ratelimiter_service"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()

    def wait_healthy(self, deadline: float) -> bool:
        """True when /health answers; False if the process died (e.g. its port was taken)."""
        assert self.process is not None
        with httpx.Client(timeout=0.5) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    return False
                try:
                    if client.get(self.url + "/health").status_code == 200:
                        return True
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
        raise RuntimeError(f"node {self.node_id} not healthy after {START_TIMEOUT_S}s; log: {self.log_text()}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, the heartbeat just stops."""
        if self.alive():
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.alive():
            assert self.process is not None
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


class NodeGroup:
    """N node processes against one Redis, started in parallel, stopped on exit."""

    def __init__(
        self,
        redis_url: str,
        *,
        count: int,
        env: Mapping[str, str] | None = None,
        clock_offsets: Sequence[str] | None = None,
        workdir: Path | None = None,
        id_prefix: str = "node",
    ) -> None:
        if clock_offsets is not None and len(clock_offsets) != count:
            raise ValueError("give one clock offset per node")
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="rl-nodes-"))
        base = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("RATELIMITER_") and key not in ("LD_PRELOAD", "FAKETIME")
        }
        self.nodes: list[NodeProcess] = []
        for index in range(count):
            node_id = f"{id_prefix}-{index}"
            node_env = {
                **base,
                "RATELIMITER_REDIS_URL": redis_url,
                "RATELIMITER_NODE_ID": node_id,
                "RATELIMITER_REDIS_DEADLINE_MS": str(TEST_REDIS_DEADLINE_MS),
                "PYTHONUNBUFFERED": "1",
                **(env or {}),
            }
            if clock_offsets is not None and clock_offsets[index] not in ("", "+0", "0"):
                library = find_libfaketime()
                if library is None:
                    raise RuntimeError("libfaketime is not installed (apt-get install faketime)")
                node_env.update(
                    LD_PRELOAD=library, FAKETIME=clock_offsets[index], FAKETIME_DONT_FAKE_MONOTONIC="1"
                )
            self.nodes.append(NodeProcess(node_id, node_env, self.workdir / f"{node_id}.log"))

    def __getitem__(self, index: int) -> NodeProcess:
        return self.nodes[index]

    def __len__(self) -> int:
        return len(self.nodes)

    def start(self) -> NodeGroup:
        deadline = time.monotonic() + START_TIMEOUT_S
        pending = list(self.nodes)
        for attempt in range(3):
            for node in pending:
                node.launch()
            # A node whose free port was grabbed in between exits; launch it again on another.
            pending = [node for node in pending if not node.wait_healthy(deadline)]
            if not pending:
                return self
        self.stop()
        raise RuntimeError(f"nodes failed to start: {[n.node_id for n in pending]}; log: {pending[0].log_text()}")

    def stop(self) -> None:
        for node in self.nodes:
            if node.alive():
                assert node.process is not None
                node.process.terminate()
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> NodeGroup:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@asynccontextmanager
async def in_process_node(
    redis_url: str, **overrides: object
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """A node app running in this event loop (lifespan included) and an HTTP client for it.

    Its Redis deadline is TEST_REDIS_DEADLINE_MS unless a test asks otherwise.
    """
    defaults: dict[str, object] = {"token": TOKEN, "redis_deadline_ms": TEST_REDIS_DEADLINE_MS}
    settings = Settings(redis_url=redis_url, **{**defaults, **overrides})  # type: ignore[arg-type]
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
            yield app, client


TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def raw_request(
    url: str, method: str, path: str, body: object | None = None, headers: Mapping[str, str] | None = None
) -> RawResponse:
    """One HTTP/1.1 request on its own connection, with asyncio streams.

    Load tests need hundreds of requests in flight at once; httpx's async pool costs about
    10 ms of client CPU per request in that case, enough to make a 2-core box the bottleneck.
    """
    host, port = url.removeprefix("http://").rsplit(":", 1)
    payload = b"" if body is None else json.dumps(body).encode()
    head = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: close", f"Content-Length: {len(payload)}"]
    if body is not None:
        head.append("Content-Type: application/json")
    head += [f"{name}: {value}" for name, value in (headers or {}).items()]
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
        raw = await reader.read(-1)
    finally:
        writer.close()
        await writer.wait_closed()
    header_block, _, content = raw.partition(b"\r\n\r\n")
    status_line, *lines = header_block.decode("latin-1").split("\r\n")
    parsed = {}
    for line in lines:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    return RawResponse(int(status_line.split()[1]), parsed, content)
