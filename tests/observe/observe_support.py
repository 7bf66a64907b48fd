"""Support for the observation tests: real HTTP servers on 127.0.0.1 (as fixtures) and a config builder.

A uniquely named module rather than a conftest.py, so `import` cannot pick up another directory's conftest.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from engine.config.models import Config
from engine.config.validate import LoadedConfig
from tests.ports import free_port


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    length: bool = True  # False: no Content-Length, the body ends when the connection closes


def json_reply(data: Any, status: int = 200) -> Reply:
    return Reply(status, json.dumps(data).encode(), "application/json")


Route = Callable[["SeenRequest"], Reply]


@dataclass(frozen=True)
class SeenRequest:
    path: str  # with the query string
    headers: dict[str, str]  # lower-cased names


@dataclass
class LoopbackServer:
    """A threaded HTTP server whose routes the test changes between ticks.

    `stall(path)` makes a path block until the test ends (released on close), which is how a
    hung endpoint looks to a client, without any sleep.
    """

    routes: dict[str, Route] = field(default_factory=dict)
    seen: list[SeenRequest] = field(default_factory=list)
    released: threading.Event = field(default_factory=threading.Event)
    stalled: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    waiting: int = 0  # requests held in stalled routes right now
    most_waiting: int = 0  # the most ever held at once: requests that were in flight together

    def __post_init__(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                request = SeenRequest(self.path, {k.lower(): v for k, v in self.headers.items()})
                owner.seen.append(request)
                route = self.path.split("?", 1)[0]
                if route in owner.stalled:
                    with owner.lock:
                        owner.waiting += 1
                        owner.most_waiting = max(owner.most_waiting, owner.waiting)
                    owner.released.wait(30)
                    return
                handler = owner.routes.get(route)
                reply = handler(request) if handler else Reply(404, b"not found", "text/plain")
                self.send_response(reply.status)
                if reply.content_type:
                    self.send_header("Content-Type", reply.content_type)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if reply.length:
                    self.send_header("Content-Length", str(len(reply.body)))
                else:
                    self.close_connection = True
                self.end_headers()
                self.wfile.write(reply.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stall(self, path: str) -> None:
        self.stalled.add(path)

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def http_server() -> Iterator[LoopbackServer]:
    server = LoopbackServer()
    yield server
    server.close()


@pytest.fixture
def other_server() -> Iterator[LoopbackServer]:
    server = LoopbackServer()
    yield server
    server.close()


@pytest.fixture
def dead_url() -> str:
    """An http URL on a loopback port nothing listens on (connection refused)."""
    return f"http://127.0.0.1:{free_port()}"


def make_config(targets: dict[str, Any], observations: dict[str, Any], secrets: frozenset[str] = frozenset()) -> LoadedConfig:
    """A LoadedConfig from plain data, as `load_config` would give for the same YAML."""
    config = Config.model_validate(
        {
            "version": 1,
            "subject": {"name": "test"},
            "targets": targets,
            "observations": observations,
            "invariants": [{"name": "always", "expr": "true"}],
        }
    )
    return LoadedConfig(config, Path("/nonexistent/test.yaml"), Path("/nonexistent"), secrets)
