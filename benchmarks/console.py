"""Benchmark: what the console costs the store it watches, and how fast it answers.

A store with EVENTS audit events (one ticket holding TICKET_EVENTS of them) is served by a real
`opctl serve` on loopback. Printed, then one JSON object as the last line:

    poll_us            one `last_event_id()` (what the live stream runs every 0.5 s per client)
    status_ms_p50      GET /api/v1/status, median over the requests
    ticket_ms_p50      GET /api/v1/tickets/1 (the incident page: events, proposals, executions)
    stream_polls_per_s the stream's polling rate per client (1 / sse.POLL_S)

Run: .venv/bin/python benchmarks/console.py [--events N] [--requests N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from engine.serve import sse
from engine.store import Store

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "ratelimiter.yaml"
TOKEN = "bench-token-0123456789"


def fill(path: Path, events: int, ticket_events: int) -> None:
    from engine.evaluate import Transition

    with Store(path) as store:
        store.apply_tick(states={}, transitions=[Transition("node_heartbeat", "node2", "pending", "firing", 1.0, "firing")],
                         entities={}, observations_snapshot={"registry": [{"id": "node2", "state": "down"}]},
                         invariants={}, messages={}, now=1.0)  # fmt: skip
        for i in range(events):
            on_ticket = i < ticket_events
            store.add_event("observation_error" if not on_ticket else "note", ticket_id=1 if on_ticket else None, actor="bench",
                            data={"i": i, "reason": "x" * 40}, at=2.0 + i)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--ticket-events", type=int, default=500)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        fill(db, args.events, args.ticket_events)
        with Store(db) as store:
            rounds = 2000
            start = time.perf_counter()
            for _ in range(rounds):
                store.last_event_id()
            poll_us = (time.perf_counter() - start) / rounds * 1e6
        port = int(os.environ.get("OPCTL_BENCH_PORT", "27990"))
        env = {**os.environ, "OPCTL_SERVE_TOKENS": f"bench:{TOKEN}:viewer"}
        server = subprocess.Popen([sys.executable, "-m", "engine", "serve", str(CONFIG), "--store", str(db), "--port", str(port)],
                                  env=env, cwd=ROOT, stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
            deadline = time.monotonic() + 30
            while True:
                try:
                    client.get("/api/v1/status")
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)

            def median_ms(path: str) -> float:
                times = []
                for _ in range(args.requests):
                    start = time.perf_counter()
                    reply = client.get(path)
                    times.append((time.perf_counter() - start) * 1000)
                    assert reply.status_code == 200, reply.text
                return round(statistics.median(times), 2)

            status_ms, ticket_ms = median_ms("/api/v1/status"), median_ms("/api/v1/tickets/1")
        finally:
            server.terminate()
            server.wait()
    result = {"events": args.events, "ticket_events": args.ticket_events, "poll_us": round(poll_us, 1),
              "status_ms_p50": status_ms, "ticket_ms_p50": ticket_ms, "stream_polls_per_s": round(1 / sse.POLL_S, 1)}  # fmt: skip
    print(f"last_event_id(): {poll_us:.1f} µs per poll over {args.events} events")
    print(f"GET /api/v1/status: {status_ms} ms; GET /api/v1/tickets/1 ({args.ticket_events} events): {ticket_ms} ms (medians)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
