"""A real HTTP node registry on 127.0.0.1 for tests with several `opctl run` processes: it lists
nodes, removes one on DELETE, logs every request with the `X-Replica` header that says which
engine sent it, and can hold requests (a slow target) until the test releases them.

    registry.nodes = {"n1": "up", "n2": "down"}
    registry.hold(lambda method, replica: method == "GET" and replica == "a")
    registry.wait_held(1)            # the first held request has arrived
    registry.release_held()          # answer the ones held so far; keep holding new ones
    registry.release()               # answer everything held, hold nothing more
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.ports import free_port
from tests.waiting import wait_for


@dataclass(frozen=True)
class Logged:
    method: str
    path: str
    replica: str


class NodeRegistry:
    def __init__(self) -> None:
        self.port = free_port()
        self.nodes: dict[str, str] = {}
        self.log: list[Logged] = []
        self.held = 0  # requests held so far
        self._hold: Callable[[str, str], bool] | None = None
        self._waiting: list[threading.Event] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def deletes(self, replica: str | None = None) -> list[str]:
        return [e.path for e in list(self.log) if e.method == "DELETE" and (replica is None or e.replica == replica)]

    def hold(self, predicate: Callable[[str, str], bool]) -> None:
        """Hold every request matching (method, replica) from now on, until `release()`."""
        with self._lock:
            self._hold = predicate

    def release_held(self) -> None:
        with self._lock:
            waiting, self._waiting = self._waiting, []
        for event in waiting:
            event.set()

    def release(self) -> None:
        with self._lock:
            self._hold = None
        self.release_held()

    def wait_held(self, count: int, timeout: float = 60.0) -> None:
        wait_for(lambda: self.held >= count, timeout=timeout)

    def start(self) -> NodeRegistry:
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                replica = self.headers.get("X-Replica", "")
                with registry._lock:
                    registry.log.append(Logged(self.command, self.path, replica))
                    released = None
                    if registry._hold is not None and registry._hold(self.command, replica):
                        released = threading.Event()
                        registry._waiting.append(released)
                        registry.held += 1
                if released is not None:
                    released.wait(120)
                status, body = registry._route(self.command, self.path)
                data = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the engine that asked was killed meanwhile

            do_GET = do_POST = do_DELETE = _answer

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def _route(self, method: str, path: str) -> tuple[int, object]:
        with self._lock:
            if method == "GET" and path == "/v1/nodes":
                return 200, {"nodes": [{"id": n, "state": s} for n, s in sorted(self.nodes.items())]}
            if method == "DELETE" and path.startswith("/v1/nodes/"):
                node = path.rpartition("/")[2]
                if self.nodes.pop(node, None) is None:
                    return 404, {"detail": f"no node {node}"}
                return 200, {"deleted": node}
        return 404, {"detail": "not found"}

    def stop(self) -> None:
        self.release()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
