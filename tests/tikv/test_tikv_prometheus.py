"""configs/tikv.yaml on the real TiKV lab, on the wall clock: the PD simulator's `/metrics` scraped
every second by a real Prometheus (compose/tikv's own config), the real engine loop reading PD's
API and Prometheus' query API, as in compose.

Each test brings the lab up on free ports (`supervisor.up`, what `opctl lab up` does) and down
again. Prometheus sends its first targets to the scrapers about 5 s after it starts (its discovery
manager batches updates every 5 s); the lab is ready once every target has been scraped. The
Monitor then ticks about once a second. Waits poll a condition with a deadline; the deadlines
are generous limits, not measurements.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.config.validate import LoadedConfig, load_config
from engine.lab import supervisor
from engine.lab.prometheus_server import find_prometheus
from engine.lab.spec import load_lab
from engine.loop import Monitor, TickReport
from engine.store import Proposal, Store, Ticket
from engine.errors import LabError
from tests.lab.demo_support import TIKV, lab_env

LAB = TIKV.parent.parent / "subjects" / "tikv" / "lab.yaml"
TICK_S = 1.0


def _prometheus_missing() -> bool:
    try:
        find_prometheus()
    except LabError:
        return True
    return False


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(_prometheus_missing(), reason="no prometheus binary (Debian package `prometheus`; .ci/run installs it)"),
]


@dataclass
class LiveLab:
    env: dict[str, str]
    loaded: LoadedConfig
    monitor: Monitor
    loop: asyncio.AbstractEventLoop
    http: httpx.Client
    reports: list[TickReport] = field(default_factory=list)

    @property
    def pd(self) -> str:
        return f"http://127.0.0.1:{self.env['OPCTL_LAB_PD_PORT_1']}"

    @property
    def prometheus(self) -> str:
        return f"http://127.0.0.1:{self.env['OPCTL_LAB_PROM_PORT']}"

    def instance(self, store_id: int) -> str:
        """The store's status address, the `instance` label the lab's Prometheus gives its target."""
        return f"tikv{store_id}:20180"

    def tick(self) -> TickReport:
        started = time.monotonic()
        report = self.loop.run_until_complete(self.monitor.tick())
        self.reports.append(report)
        time.sleep(max(0.0, TICK_S - (time.monotonic() - started)))
        return report

    def tick_until(self, condition: Callable[[], bool], limit: float, what: str, *, each: Callable[[], None] | None = None) -> float:
        """Tick until `condition()` holds (checking `each()` after every tick); the seconds it took."""
        started = time.monotonic()
        while True:
            self.tick()
            if each is not None:
                each()
            if condition():
                return time.monotonic() - started
            assert time.monotonic() - started < limit, f"{what}: not after {limit:g}s; last tick: {self.reports[-1].invariants}"

    def chaos(self, action: str, **body: Any) -> None:
        self.http.post(f"{self.pd}/sim/chaos/{action}", json=body).raise_for_status()

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Prometheus' answer to `expr`, straight from its API."""
        reply = self.http.get(f"{self.prometheus}/api/v1/query", params={"query": expr}).json()
        assert reply["status"] == "success", reply
        result: list[dict[str, Any]] = reply["data"]["result"]
        return result

    def by_instance(self, observation: str) -> dict[str, Any]:
        return {s["labels"]["instance"]: s["value"] for s in self.monitor.previous.get(observation) or []}

    def status(self, invariant: str, key: str) -> str:
        state = self.monitor.states.get((invariant, key))
        return state.status if state is not None else "ok"

    def tickets(self) -> list[Ticket]:
        return self.monitor.store.tickets(limit=1000)

    def only_ticket(self, invariant: str) -> Ticket:
        [ticket] = [t for t in self.tickets() if t.invariant == invariant]
        return ticket

    def proposals(self, ticket: Ticket) -> list[Proposal]:
        return self.monitor.store.proposals(ticket_id=ticket.id)

    def evicted(self) -> dict[str, Any]:
        response = self.http.get(f"{self.pd}/pd/api/v1/scheduler-config/evict-leader-scheduler/list")
        return {} if response.status_code == 404 else dict(response.json()["store-id-ranges"])


@contextlib.contextmanager
def live_lab(tmp_path: Path, *, mode: str = "observe", **overrides: str) -> Iterator[LiveLab]:
    env = {**lab_env(TIKV, tmp_path / "state"), **overrides}
    spec = load_lab(LAB, env)
    status = supervisor.up(spec, env=env)
    loop = asyncio.new_event_loop()
    try:
        loaded = load_config(TIKV, {**env, **status.exports, "OPCTL_STORE": str(tmp_path / "tikv.db")})
        with Store(loaded.store_path) as store, httpx.Client(timeout=5) as http:
            store.set_mode(mode, actor="test")
            monitor = Monitor(loaded, store=store)
            try:
                yield LiveLab(env, loaded, monitor, loop, http)
            finally:
                loop.run_until_complete(monitor.aclose())
    finally:
        loop.close()
        supervisor.down(spec)


def healthy(lab: LiveLab) -> bool:
    """Every observation answered and each per-TiKV observation holds all three stores."""
    report = lab.reports[-1]
    return all(o["ok"] for o in report.observations.values()) and all(
        len(lab.by_instance(name)) == 3 for name in ("store_space", "store_p99")
    )


def test_a_stopped_store_leaves_the_answers_and_its_peers_count_as_down(tmp_path: Path) -> None:
    with live_lab(tmp_path, OPCTL_LAB_TIKV_MAX_PEER_DOWN="5") as lab:
        lab.tick_until(lambda: healthy(lab), limit=20, what="a healthy first answer")
        stores = {lab.instance(i) for i in (1, 2, 3)}
        assert set(lab.by_instance("store_space")) == set(lab.by_instance("store_p99")) == stores
        assert all(0.5 < v < 0.8 for v in lab.by_instance("store_space").values())
        assert all(0 < v < 0.05 for v in lab.by_instance("store_p99").values())
        # The PD leader's region counts, joined on etcd_server_is_leader: one sample per check type.
        assert sorted((s["labels"]["type"], s["value"]) for s in lab.monitor.previous["region_health"]) == [
            ("down-peer-region-count", 0), ("miss-peer-region-count", 0), ("pending-peer-region-count", 0),
        ]  # fmt: skip
        assert lab.tickets() == []

        dead = lab.instance(3)
        lab.chaos("store_down", store_id=3)
        # Its scrape fails (connection refused): Prometheus marks its series stale at once, so the
        # gauges of two stores remain and the invariant sees two stores, not three with one NaN.
        lab.tick_until(lambda: dead not in lab.by_instance("store_space"), limit=10, what="store 3's space series gone")
        assert set(lab.by_instance("store_space")) == stores - {dead}
        assert lab.reports[-1].invariants["store_space"]["ok"] == 2
        assert [s["metric"]["instance"] for s in lab.query('up{job="tikv"} == 0')] == [dead]

        # Its latency is a 1 m rate: the requests it served in that minute stay real data (a
        # finite p99, never NaN) until they leave the window, then its series is gone too.
        def p99_finite() -> None:
            assert all(value is not None for value in lab.by_instance("store_p99").values()), lab.by_instance("store_p99")

        lab.tick_until(lambda: dead not in lab.by_instance("store_p99"), limit=80, what="store 3's p99 gone", each=p99_finite)
        assert lab.reports[-1].invariants["store_latency_p99"]["ok"] == 2
        # Meanwhile PD saw it: Disconnected after 20 s, and its peers down after 5 s of silence.
        assert lab.status("store_up", "3") == "firing"
        down_peers = lab.query('pd_regions_status{type="down-peer-region-count"} and on(instance) etcd_server_is_leader == 1')
        assert [s["value"][1] for s in down_peers] == ["60"]
        lab.tick_until(lambda: lab.status("regions_healthy", "down-peer-region-count") == "firing", limit=40, what="down peers fire")
        assert lab.only_ticket("regions_healthy").message == "60 regions in down-peer state"

        lab.chaos("store_up", store_id=3)
        lab.tick_until(lambda: dead in lab.by_instance("store_space"), limit=10, what="store 3 scraped again")


def test_disk_full_fires_on_the_status_address_and_recovers_with_hysteresis(tmp_path: Path) -> None:
    with live_lab(tmp_path) as lab:
        lab.tick_until(lambda: healthy(lab), limit=20, what="a healthy first answer")
        full = lab.instance(2)
        lab.chaos("disk_full", store_id=2, available_ratio=0.05)
        lab.tick_until(lambda: lab.status("store_space", full) == "firing", limit=15, what="store_space fires")
        ticket = lab.only_ticket("store_space")
        assert (ticket.entity_key, ticket.message) == (full, f"TiKV {full} has 5.0% of its disk available")
        # 22 % is healthy for `expr` but not for `resolve_when` (25 %): it keeps firing.
        lab.chaos("disk_full", store_id=2, available_ratio=0.22)
        lab.tick_until(lambda: abs(lab.by_instance("store_space")[full] - 0.22) < 0.001, limit=5, what="22% seen")
        for _ in range(4):
            lab.tick()
            assert lab.status("store_space", full) == "firing" and lab.monitor.states[("store_space", full)].cleared_since is None
        lab.chaos("disk_ok", store_id=2)
        lab.tick_until(lambda: lab.monitor.store.ticket(ticket.id).status == "resolved", limit=20, what="resolved")  # type: ignore[union-attr]
        assert lab.proposals(ticket) == []  # no declared action frees disk: a human decides
        assert [t.invariant for t in lab.tickets()] == ["store_space"]


def test_hot_store_is_mapped_from_instance_to_store_and_evicted(tmp_path: Path) -> None:
    """Up to the eviction and its confirmed effect; that its p99 then goes quiet (no data once the
    1 m window holds no request) and the ticket resolves, `opctl demo ... --scenario hot_store`
    shows, at a minute and a half of wall clock too long for the suite."""
    with live_lab(tmp_path, mode="execute") as lab:
        lab.tick_until(lambda: healthy(lab), limit=20, what="a healthy first answer")
        hot = lab.instance(1)
        lab.chaos("hot_store", store_id=1, latency_ms=300, slow_score=90)
        lab.tick_until(lambda: lab.status("store_latency_p99", hot) == "firing", limit=25, what="p99 fires")
        ticket = lab.only_ticket("store_latency_p99")
        assert ticket.entity_key == hot
        latency = re.fullmatch(rf"TiKV {re.escape(hot)} p99 gRPC latency is (\d+) ms", ticket.message)
        assert latency is not None and int(latency[1]) > 100, ticket.message
        # `instance` is the status address; the runbook maps it to store 1 through `status_address`
        # and the engine executes the eviction against PD.
        lab.tick_until(lambda: bool(lab.proposals(ticket)), limit=5, what="a proposal")
        [proposal] = lab.proposals(ticket)
        assert (proposal.action, proposal.params, proposal.status) == ("add_evict_leader", {"store_id": 1}, "succeeded")
        assert lab.evicted() == {"1": [{"start-key": "", "end-key": ""}]}
        lab.tick_until(lambda: "effect_confirmed" in [e.kind for e in lab.monitor.store.events(ticket.id)], limit=5, what="its effect")

        def leaders(store_id: int) -> int:
            reply = lab.http.get(f"{lab.pd}/pd/api/v1/store/{store_id}").json()
            return int(reply["status"]["leader_count"])

        lab.tick_until(lambda: leaders(1) == 0, limit=20, what="store 1 holds no leader")
        assert lab.monitor.store.ticket(ticket.id).status == "verifying"  # type: ignore[union-attr]
