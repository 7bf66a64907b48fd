"""beehive: a tiny job service to write an opctl subject for (see docs/tutorial.md).

A hive of worker bees takes jobs from one queue. Each bee heartbeats while it works; a stuck
bee stops heartbeating and stops taking jobs, so the queue grows. Python's standard library
only, one process:

    python3 examples/beehive/beehive.py --port 18480 --bees 3 --token hive-token

HTTP API (JSON):
    GET  /health                      200 {"ok": true}
    GET  /v1/hive                     {"bees": [{"id", "beat_age_s", "done"}], "queue": N}
    POST /v1/bees/{id}/restart        restart one bee (needs `Authorization: Bearer TOKEN`)
    POST /chaos/stick/{id}            make one bee stuck, as a bug would (for the lab's scenarios)

The hive does not say which bee is stuck (it cannot tell a stuck bee from a slow one); each
bee's `beat_age_s`, the seconds since its last heartbeat, does.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BEAT_EVERY_S = 0.1
JOBS_PER_S = 20.0
JOB_S = 0.1  # one bee finishes about 10 jobs a second: three bees keep up, two barely


@dataclass
class Bee:
    id: str
    stuck: bool = False
    last_beat: float = field(default_factory=time.monotonic)
    done: int = 0


class Hive:
    def __init__(self, bees: int) -> None:
        self.lock = threading.Lock()
        self.bees = [Bee(f"bee-{i}") for i in range(1, bees + 1)]
        self.queue = 0
        self.stop = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._arrivals, daemon=True).start()
        for bee in self.bees:
            threading.Thread(target=self._work, args=(bee,), daemon=True).start()

    def _arrivals(self) -> None:
        while not self.stop.wait(1 / JOBS_PER_S):
            with self.lock:
                self.queue += 1

    def _work(self, bee: Bee) -> None:
        while not self.stop.wait(BEAT_EVERY_S):
            with self.lock:
                if bee.stuck:
                    continue  # no heartbeat, no work
                bee.last_beat = time.monotonic()
                taken = min(self.queue, round(BEAT_EVERY_S / JOB_S))
                self.queue -= taken
                bee.done += taken

    def view(self) -> dict[str, object]:
        now = time.monotonic()
        with self.lock:
            bees = [
                {"id": b.id, "beat_age_s": round(now - b.last_beat, 2), "done": b.done}
                for b in self.bees
            ]
            return {"bees": bees, "queue": self.queue}

    def find(self, bee_id: str) -> Bee | None:
        return next((b for b in self.bees if b.id == bee_id), None)

    def stick(self, bee_id: str) -> bool:
        with self.lock:
            bee = self.find(bee_id)
            if bee is not None:
                bee.stuck = True
            return bee is not None

    def restart(self, bee_id: str) -> bool:
        with self.lock:
            bee = self.find(bee_id)
            if bee is not None:
                bee.stuck, bee.last_beat = False, time.monotonic()
            return bee is not None


def handler(hive: Hive, token: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 (the http.server API)
            if self.path == "/health":
                self._send(200, {"ok": True})
            elif self.path == "/v1/hive":
                self._send(200, hive.view())
            else:
                self._send(404, {"detail": "not found"})

        def do_POST(self) -> None:  # noqa: N802
            parts = self.path.strip("/").split("/")
            if len(parts) == 4 and parts[:2] == ["v1", "bees"] and parts[3] == "restart":
                if token and self.headers.get("Authorization") != f"Bearer {token}":
                    self._send(401, {"detail": "a bearer token is needed"})
                elif hive.restart(parts[2]):
                    self._send(200, {"id": parts[2], "restarted": True})
                else:
                    self._send(404, {"detail": f"no bee {parts[2]}"})
            elif len(parts) == 3 and parts[:2] == ["chaos", "stick"]:
                self._send(200, {"id": parts[2], "stuck": True}) if hive.stick(parts[2]) else self._send(404, {"detail": "no such bee"})
            else:
                self._send(404, {"detail": "not found"})

        def log_message(self, *args: object) -> None:
            pass

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=18480)
    parser.add_argument("--bees", type=int, default=3)
    parser.add_argument("--token", default="", help="Bearer token restarts need (none: restarts are open).")
    args = parser.parse_args()
    hive = Hive(args.bees)
    hive.start()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler(hive, args.token))
    print(json.dumps({"event": "started", "port": args.port, "bees": args.bees}), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
