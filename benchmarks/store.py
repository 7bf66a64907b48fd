"""Benchmark: what writing one tick costs the store, on SQLite and on PostgreSQL, in one run.

For 1k and 10k entities of one invariant (`for: 0s`), each tick has 1% of the entities change:
half of them start firing (a ticket opens, with its event) and half of those firing longest
resolve (the ticket resolves, with its event), so about 1% of the entities are firing at any
time, and every open ticket whose entity still fires gets its last_seen bumped, as the engine
does. What is timed is `Store.apply_tick`, the tick's one transaction, plus
`record_observation_errors` (the tick's second write); the evaluation is not (see
benchmarks/engine_tick.py).

SQLite: a file in a temporary directory (WAL, synchronous=NORMAL, as the engine opens it).
PostgreSQL: a cluster made by `initdb` in a temporary directory and served on 127.0.0.1 with its
default durability (fsync and synchronous_commit on), over TCP; skipped, with the reason in the
JSON, where PostgreSQL is not installed.

The last line printed is one JSON object:

    sqlite_ms_1k, sqlite_ms_10k          median ms per tick write (SQLite)
    postgresql_ms_1k, postgresql_ms_10k  median ms per tick write (PostgreSQL)
    *_p90_ms_*                            the 90th percentile of the same ticks
    transitions_per_tick_1k / _10k       10 and 100
    ticks                                 measured ticks per backend and size
    sqlite_lease_renew_ms, postgresql_lease_renew_ms
                                          median ms of one lease renewal (`hold_lease`, every tick)
    sqlite_fenced_write_ms / _unfenced_write_ms (and postgresql_)
                                          median ms of one small write with and without the
                                          fencing check (which also renews the lease)
    sqlite_takeover_s, postgresql_takeover_s
                                          seconds from a leader's last renewal (it was killed) to
                                          a follower, ticking every LEASE_INTERVAL_S, leading;
                                          the bound is ttl + one interval (LEASE_TTL_S + LEASE_INTERVAL_S)

Run: .venv/bin/python benchmarks/store.py [--ticks N] [--port PORT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

from engine.config.models import Invariant
from engine.evaluate import Entity, EntityState, StateMap, Transition
from engine.lab.postgres_server import PostgresServer, find_postgres_bin
from engine.lab.redis_server import free_port
from engine.store import Store

SIZES = (1_000, 10_000)
LEASE_ROUNDS = 200
LEASE_TTL_S = 1.5
LEASE_INTERVAL_S = 0.5
WARMUP_TICKS = 5
INV = Invariant.model_validate({"name": "node_up", "for_each": "nodes", "key": "item.id", "expr": "item.up", "for": "0s"})


class Workload:
    """The entities, and which of them fire, tick after tick (the same sequence on every backend)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.per_tick = max(2, size // 100)
        self.keys = [f"node-{i:05d}" for i in range(size)]
        self.entities = {("node_up", k): Entity("node_up", k, {"id": k, "up": True}) for k in self.keys}
        self.firing: deque[str] = deque()  # oldest first
        self.states: dict[str, EntityState] = {}
        self.next_to_fire = 0
        self.now = 1_700_000_000.0

    def tick(self) -> dict[str, Any]:
        self.now += 10.0
        transitions: list[Transition] = []
        half = self.per_tick // 2
        resolving = [self.firing.popleft() for _ in range(min(half, len(self.firing)))] if len(self.firing) >= self.per_tick else []
        for key in resolving:
            transitions.append(Transition("node_up", key, "firing", "ok", self.now, "resolved"))
        for _ in range(self.per_tick - len(resolving)):
            key = self.keys[self.next_to_fire % self.size]
            self.next_to_fire += 1
            if key in self.firing:
                continue
            self.firing.append(key)
            transitions.append(Transition("node_up", key, "ok", "firing", self.now, "firing"))
        for t in transitions:  # a state changes only with its transition, as the evaluator's do
            if t.kind == "firing":
                self.states[t.key] = EntityState("firing", self.now, self.now, None, None, self.now)
            else:
                del self.states[t.key]
        firing = set(self.firing)
        unsettled = {("node_up", k): state for k, state in self.states.items()}
        states = StateMap({"node_up": [k for k in self.keys if k not in firing]}, unsettled)
        return {
            "states": states, "transitions": transitions, "entities": self.entities,
            "observations_snapshot": {"nodes": {"count": self.size}}, "invariants": {"node_up": INV},
            "messages": {("node_up", t.key): f"node {t.key} is down" for t in transitions}, "now": self.now,
        }  # fmt: skip


def bench(store: Store, size: int, ticks: int) -> list[float]:
    """ms per tick write, for `ticks` ticks after a warm-up that fills the firing set."""
    workload = Workload(size)
    timings: list[float] = []
    for n in range(WARMUP_TICKS + ticks):
        tick = workload.tick()
        started = time.perf_counter()
        store.apply_tick(**tick)
        store.record_observation_errors({}, tick["now"])
        elapsed = (time.perf_counter() - started) * 1000
        if n >= WARMUP_TICKS:
            timings.append(elapsed)
    return timings


def lease_costs(location: Path | str) -> dict[str, float]:
    """ms of a renewal, and of one small write with and without the fence, on a fresh store."""
    with Store(location) as plain:
        unfenced = _timed(lambda: plain.add_event("bench", ticket_id=None, actor="bench", at=0.0, data={}))
    with Store(location) as leader:
        leader.hold_lease("bench", ttl=60)
        renew = _timed(lambda: leader.hold_lease("bench", ttl=60))
        fenced = _timed(lambda: leader.add_event("bench", ticket_id=None, actor="bench", at=0.0, data={}))
        leader.release_lease("bench")
    return {"lease_renew_ms": statistics.median(renew), "fenced_write_ms": statistics.median(fenced),
            "unfenced_write_ms": statistics.median(unfenced)}  # fmt: skip


def takeover_s(location: Path | str) -> float:
    """The leader renews, then stops (killed); the follower tries every LEASE_INTERVAL_S."""
    with Store(location) as leader, Store(location) as follower:
        leader.hold_lease("a", ttl=LEASE_TTL_S)
        last_renewal = time.monotonic()
        while not follower.hold_lease("b", ttl=LEASE_TTL_S).leading:
            time.sleep(LEASE_INTERVAL_S)
        return time.monotonic() - last_renewal


def _timed(write: Any) -> list[float]:
    out = []
    for _ in range(LEASE_ROUNDS):
        started = time.perf_counter()
        write()
        out.append((time.perf_counter() - started) * 1000)
    return out


def p90(values: list[float]) -> float:
    return sorted(values)[min(len(values) - 1, int(len(values) * 0.9))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ticks", type=int, default=30, help="ticks measured per backend and size")
    parser.add_argument("--port", type=int, default=None, help="the loopback port of the benchmark's PostgreSQL")
    args = parser.parse_args()
    summary: dict[str, Any] = {"ticks": args.ticks}
    server = None
    if find_postgres_bin() is None:
        summary["postgresql"] = "skipped: PostgreSQL is not installed (apt-get install postgresql)"
    else:
        server = PostgresServer(args.port or free_port(), durable=True).start()
    try:
        with tempfile.TemporaryDirectory(prefix="opctl-bench-") as tmp:
            for size in SIZES:
                label = f"{size // 1000}k"
                summary[f"transitions_per_tick_{label}"] = max(2, size // 100)
                backends: dict[str, Path | str] = {"sqlite": Path(tmp) / f"bench-{label}.db"}
                if server is not None:
                    backends["postgresql"] = server.create_database(f"bench_{label}")
                for name, location in backends.items():
                    with Store(location) as store:
                        timings = bench(store, size, args.ticks)
                    median = statistics.median(timings)
                    summary[f"{name}_ms_{label}"] = round(median, 2)
                    summary[f"{name}_p90_ms_{label}"] = round(p90(timings), 2)
                    print(f"{name:>10} {size:>6} entities, {max(2, size // 100):>3} transitions/tick: "
                          f"{median:7.2f} ms/tick (p90 {p90(timings):7.2f})")
            backends = {"sqlite": Path(tmp) / "lease.db"}
            if server is not None:
                backends["postgresql"] = server.create_database("bench_lease")
            for name, location in backends.items():
                for key, value in lease_costs(location).items():
                    summary[f"{name}_{key}"] = round(value, 3)
                summary[f"{name}_takeover_s"] = round(takeover_s(location), 2)
                print(f"{name:>10} lease: renewal {summary[f'{name}_lease_renew_ms']:.3f} ms, write {summary[f'{name}_unfenced_write_ms']:.3f} ms "
                      f"unfenced / {summary[f'{name}_fenced_write_ms']:.3f} ms fenced; takeover {summary[f'{name}_takeover_s']:.2f} s "
                      f"(bound {LEASE_TTL_S + LEASE_INTERVAL_S:.1f} s)")
    finally:
        if server is not None:
            server.remove()
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
