"""A real HTTP server on 127.0.0.1 whose JSON answers a test changes between ticks."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.ports import free_port


class JsonServer:
    """Serves `routes[path] = (status, body)`; records every request it gets."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.routes: dict[str, tuple[int, Any]] = {}
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set(self, path: str, body: Any, status: int = 200) -> None:
        self.routes[path] = (status, body)

    def start(self) -> JsonServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                payload = self.rfile.read(length) if length else b""
                server.requests.append((self.command, self.path, dict(self.headers), payload))
                status, body = server.routes.get(self.path.split("?", 1)[0], (404, {"detail": "not found"}))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _answer

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        # shutdown() waits for the serve loop to look at its flag: every 20 ms, not the default 500 ms
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening: connections are refused from now on."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> JsonServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
