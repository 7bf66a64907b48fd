"""A tiny HTTP process for lab tests: `python tiny_http.py PORT [--exit-now MSG]`.

GET /health answers 200 {"status": "ok", "pid": ..., "env": <value of $TINY_ECHO>}; anything else
404. Prints "tiny listening on PORT" once it listens. With `--exit-now MSG` it prints MSG and exits
with code 3 before listening (a process that dies while starting).
"""

from __future__ import annotations

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path != "/health":
            self.send_error(404)
            return
        body = json.dumps({"status": "ok", "pid": os.getpid(), "env": os.environ.get("TINY_ECHO", "")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def main() -> int:
    port = int(sys.argv[1])
    if len(sys.argv) > 3 and sys.argv[2] == "--exit-now":
        print(sys.argv[3], flush=True)
        return 3
    server = HTTPServer(("127.0.0.1", port), Handler)
    print(f"tiny listening on {port}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
