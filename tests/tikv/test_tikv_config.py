"""configs/tikv.yaml end to end on PD: the real engine loop against the PD simulator's API.

Three PD front-ends are served on loopback ports over one simulated cluster; the simulator and the
Monitor share a FakeClock, so every `for` and heartbeat moves only when a test advances it. Every
tick is a real `Monitor.tick()`: real HTTP, real CEL, a real SQLite ticket store, and the real
acting stage (runbook diagnosis, the gate with the actions' guards over fresh observations, and,
in execute mode, the real executor).

There is no Prometheus here: a real one cannot follow a FakeClock, so the config's Prometheus
observations fail (connection refused to a port nothing listens on) and their invariants keep
their state (`on_error: keep`). What reads Prometheus is tested on the wall clock against the
real TiKV lab, real Prometheus included, in test_tikv_prometheus.py.

Detection tests run in observe mode (proposals are recorded, nothing is sent), so the scenario
stays what the test made it; the remediation tests run in execute mode. Requests a test sends
itself (a human or chaos touching PD) are rendered from the action declarations by the engine's
`render_request` and sent by `send`, so a wrong path, query or body in the YAML fails here.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.act import render_request
from engine.config.models import Action
from engine.config.validate import LoadedConfig, load_config
from engine.diagnose import DiagnosisRequest, render_prompts
from engine.expr import compile_expr
from engine.loop import Monitor, TickReport
from engine.observe import Observer
from engine.store import Proposal, Store, Ticket
from subjects.tikv.pdsim.model import Cluster, SimSettings
from subjects.tikv.pdsim.pd_api import create_pd_app
from subjects.tikv.pdsim.testing import FakeClock, serve
from tests.ports import free_port

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "tikv.yaml"
INVARIANTS = ("store_up", "leader_balance", "regions_healthy", "store_space", "store_latency_p99")
PD_OBSERVATIONS = ("stores", "schedulers", "evicted_stores", "replicas")


@pytest.fixture(autouse=True)
def _runbook_diagnosis(monkeypatch: pytest.MonkeyPatch) -> None:
    """`diagnosis: auto` must resolve to the offline runbook provider here."""
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)


# --------------------------------------------------------------------------- the lab in-process


@dataclass
class TikvLab:
    clock: FakeClock
    cluster: Cluster
    loaded: LoadedConfig
    monitor: Monitor
    loop: asyncio.AbstractEventLoop
    pd_urls: list[str]
    pd_servers: dict[str, contextlib.ExitStack]
    http: httpx.Client  # the test's own requests; a new connection for each, no TLS context each
    reports: list[TickReport] = field(default_factory=list)
    seen: dict[str, set[tuple[str, str]]] = field(default_factory=dict)  # invariant -> {(status, key)}

    def run(self, seconds: float, step: float = 2.0) -> TickReport:
        """Advance simulator and engine together: one sim round and one engine tick per step."""
        report = None
        elapsed = 0.0
        while elapsed < seconds:
            self.clock.advance(step)
            self.cluster.tick()
            report = self.loop.run_until_complete(self.monitor.tick())
            self.reports.append(report)
            for (inv, key), state in self.monitor.states.items():
                self.seen.setdefault(inv, set()).add((state.status, key))
            elapsed += step
        assert report is not None
        return report

    def run_until(self, invariant: str, key: str, status: str, limit: float, step: float = 2.0) -> float:
        """Ticks until (invariant, key) reaches `status`; returns the simulated seconds it took."""
        waited = 0.0
        while self.status(invariant, key) != status:
            assert waited < limit, f"{invariant}[{key}] is {self.status(invariant, key)}, not {status}, after {waited}s"
            self.run(step, step)
            waited += step
        return waited

    def status(self, invariant: str, key: str) -> str:
        state = self.monitor.states.get((invariant, key))
        return state.status if state is not None else "ok"

    def value(self, observation: str) -> Any:
        return self.monitor.previous[observation]

    def store_view(self, store_id: int) -> dict[str, Any]:
        return next(s for s in self.value("stores") if s["store"]["id"] == store_id)

    def tickets(self) -> list[Ticket]:
        # no Prometheus here (see the docstring): its target_up ticket is right, and not under test
        return [t for t in self.monitor.store.tickets(limit=1000) if (t.invariant, t.entity_key) != ("target_up", "prometheus")]

    def unresolved(self) -> list[Ticket]:
        return [t for t in self.tickets() if t.is_open]

    def ticket(self, ticket_id: int) -> Ticket:
        ticket = self.monitor.store.ticket(ticket_id)
        assert ticket is not None
        return ticket

    def proposals(self, ticket: Ticket) -> list[Proposal]:
        return self.monitor.store.proposals(ticket_id=ticket.id)

    def prompts(self, ticket: Ticket) -> tuple[str, str]:
        """The (system, user) diagnosis prompts of a ticket, rendered from subjects/tikv/prompts."""
        invariant = self.loaded.config.invariant(ticket.invariant)
        assert invariant is not None
        request = DiagnosisRequest(
            ticket=ticket, invariant=invariant, item=ticket.snapshot.get("item"), key=ticket.entity_key,
            observations=dict(self.monitor.previous), events=self.monitor.store.events(ticket.id),
        )  # fmt: skip
        return render_prompts(self.loaded, request, "observe", self.clock())

    def action(self, name: str) -> Action:
        return next(a for a in self.loaded.config.actions if a.name == name)

    def guard(self, name: str, params: dict[str, Any]) -> bool:
        """The action's `when` over the latest observations (the gate evaluates it the same way)."""
        action = self.action(name)
        assert action.when is not None
        compiled = compile_expr(action.when)
        env = {**self.monitor.previous, "params": params, "now": self.clock(), "vars": self.loaded.config.variable_values()}
        return bool(compiled.evaluate({n: env[n] for n in compiled.names if n in env}))

    def send(self, name: str, params: dict[str, Any], endpoint: str | None = None) -> httpx.Response:
        """Send a declared action's request as the engine renders it (test-side transport only)."""
        request = render_request(self.action(name), params)
        url = (endpoint or self.pd_urls[0]).rstrip("/") + (request.path or "")
        return self.http.request(
            request.method or "GET", url, params=request.query, headers=request.headers,
            json=request.body if request.body is not None else None,
        )  # fmt: skip

    def pd_request(self, method: str, path: str, body: Any = None) -> httpx.Response:
        """A request that is not a declared action: what a human (or chaos) does to PD."""
        return self.http.request(method, self.pd_urls[0] + path, json=body)

    def take_pd_down(self, member: str) -> None:
        """As the simulator process does: the member leaves the cluster and its listener closes."""
        self.cluster.set_member_down(member, True)
        self.pd_servers.pop(member).close()

    def quiet_except(self, *allowed: str, transient: tuple[str, ...] = ()) -> None:
        """No ticket was ever opened for invariants not in `allowed`; none of them even went
        pending, except those in `transient` (pending that cleared before `for`)."""
        for ticket in self.tickets():
            assert ticket.invariant in allowed, f"unexpected ticket: {ticket.invariant}[{ticket.entity_key}] {ticket.message}"
        for inv in INVARIANTS:
            if inv not in allowed:
                limit = {"ok", "pending"} if inv in transient else {"ok"}
                assert {s for s, _ in self.seen.get(inv, set())} <= limit, f"{inv} left ok: {self.seen[inv]}"


@contextlib.contextmanager
def tikv_lab(
    tmp_path: Path,
    *,
    mode: str = "observe",
    config: Path = CONFIG,
    stores: int = 3,
    settings: SimSettings | None = None,
    max_store_down_time: str | None = None,
) -> Iterator[TikvLab]:
    clock = FakeClock()
    cluster = Cluster(clock, stores=stores, regions=60, seed=5, settings=settings)
    if max_store_down_time is not None:
        cluster.schedule_config["max-store-down-time"] = max_store_down_time
    loop = asyncio.new_event_loop()
    with contextlib.ExitStack() as stack:
        pd_servers: dict[str, contextlib.ExitStack] = {}
        pd_urls = []
        for member in ("pd1", "pd2", "pd3"):
            member_stack = contextlib.ExitStack()
            pd_urls.append(member_stack.enter_context(serve(create_pd_app(cluster, member))))
            pd_servers[member] = member_stack
            stack.callback(lambda m=member: pd_servers.pop(m, contextlib.ExitStack()).close())
        http = stack.enter_context(httpx.Client(timeout=5, limits=httpx.Limits(max_keepalive_connections=0)))
        env = {
            "PD_URL_1": pd_urls[0],
            "PD_URL_2": pd_urls[1],
            "PD_URL_3": pd_urls[2],
            "PROMETHEUS_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens: see the docstring
            "OPCTL_STORE": str(tmp_path / "tikv.db"),
        }
        loaded = load_config(config, env=env)
        store = Store(loaded.store_path, clock=clock)
        if mode != loaded.config.mode:
            store.set_mode(mode, actor="test")
        monitor = Monitor(loaded, store=store, observer=Observer(loaded, wall_clock=clock), clock=clock)
        try:
            yield TikvLab(clock, cluster, loaded, monitor, loop, pd_urls, pd_servers, http)
        finally:
            loop.run_until_complete(monitor.aclose())
            loop.close()
            store.close()


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[TikvLab]:
    with tikv_lab(tmp_path) as running:
        yield running


def only_ticket(lab: TikvLab, invariant: str) -> Ticket:
    tickets = [t for t in lab.tickets() if t.invariant == invariant]
    assert len(tickets) == 1, [(t.invariant, t.entity_key, t.status) for t in lab.tickets()]
    return tickets[0]


# --------------------------------------------------------------------------- healthy cluster


@pytest.mark.parametrize(
    ("settings", "seconds"),
    [(SimSettings(), 140), (SimSettings(disconnect_after=6.0, heartbeat_interval=3.0), 60)],
    ids=["pd-timing", "short-timing"],
)
def test_healthy_cluster_opens_nothing_over_many_ticks(tmp_path: Path, settings: SimSettings, seconds: int) -> None:
    with tikv_lab(tmp_path, settings=settings) as lab:
        # pd-timing: 70 ticks, 14 heartbeat rounds; short-timing (a lowered disconnect window): 20 rounds.
        last = lab.run(seconds)
        lab.quiet_except()
        assert lab.tickets() == []
        assert all(last.observations[name]["ok"] for name in PD_OBSERVATIONS), last.observations
        assert last.invariants["store_up"]["ok"] == 3
        assert last.invariants["leader_balance"]["health"] == "ok"


# --------------------------------------------------------------------------- store_down


def test_store_down_fires_store_up_stays_open_when_down_and_recovery_resolves(tmp_path: Path) -> None:
    with tikv_lab(tmp_path, max_store_down_time="2m0s") as lab:
        lab.run(20)
        lab.cluster.stop_store(3)
        # PD reports Disconnected after 20 s of silence; `for` adds 4 s.
        waited = lab.run_until("store_up", "3", "pending", limit=30)
        assert 10 <= waited <= 30
        assert lab.store_view(3)["store"]["state_name"] == "Disconnected"
        lab.run_until("store_up", "3", "firing", limit=6)
        ticket = only_ticket(lab, "store_up")
        assert ticket.entity_key == "3" and ticket.severity == "critical"
        assert ticket.message == "store 3 (tikv3:20160) is Disconnected"
        # The runbook proposes keeping leaders off the dead store, and the gate lets it pass.
        lab.run(2)
        [proposal] = lab.proposals(ticket)
        assert (proposal.action, proposal.params, proposal.source) == ("add_evict_leader", {"store_id": 3}, "runbook")
        assert proposal.status == "proposed", (proposal.gate, proposal.detail)
        system, user = lab.prompts(ticket)
        assert "map them to a store through `store.status_address`" in system
        assert "`max-store-down-time`" in system  # the subject's context.md
        assert "invariant `store_up` (critical) is violated\nfor `3`" in user
        assert '"state_name": "Disconnected"' in user  # the entity, as observed
        assert "`set_store_offline` (risk high, needs human approval" in user
        # For up to 20 s the dead store still reads Up with its leaders gone: leader_balance goes
        # pending and clears when PD calls the store Disconnected, well before its `for`.
        lab.quiet_except("store_up", transient=("leader_balance",))
        assert lab.status("leader_balance", "") == "ok"

        # Past max-store-down-time PD calls it Down: the same ticket stays open.
        while lab.store_view(3)["store"]["state_name"] != "Down":
            assert lab.clock() - lab.cluster.stores[3].last_heartbeat_ns / 1e9 < 125
            lab.run(2)
        assert lab.monitor.store.open_ticket_for("store_up", "3") == lab.ticket(ticket.id)
        assert lab.status("leader_balance", "") == "ok"

        lab.cluster.start_store(3)
        lab.run(2)
        assert lab.store_view(3)["store"]["state_name"] == "Up"
        lab.run(12)
        assert lab.ticket(ticket.id).status == "resolved"
        assert lab.unresolved() == []
        # The restarted store gets its leaders back from balance-leader well within `for`.
        assert not [t for t in lab.tickets() if t.invariant == "leader_balance"]


# --------------------------------------------------------------------------- leader_imbalance


def test_leader_imbalance_without_balance_scheduler_fires_and_resolves(lab: TikvLab) -> None:
    lab.run(10)
    assert lab.pd_request("DELETE", "/pd/api/v1/schedulers/balance-leader-scheduler").status_code == 200
    lab.cluster.skew_leaders(1)
    lab.run_until("leader_balance", "", "pending", limit=4)
    waited = lab.run_until("leader_balance", "", "firing", limit=40)
    assert waited >= 24  # `for: 25s`
    ticket = only_ticket(lab, "leader_balance")
    assert ticket.entity_key == ""
    assert ticket.message == (
        "leader scores of Up stores range from 0 (store 2) to 60 (store 1); balance-leader-scheduler is not running"
    )
    lab.quiet_except("leader_balance")
    _, user = lab.prompts(ticket)
    assert "for the whole cluster" in user and "balance-leader-scheduler is running" in user
    assert "## evicted_stores\n{}" in user and "## schedulers" in user
    # No evict-leader scheduler to remove: the runbook's param finds no store, so its entry is a
    # refused proposal that says why; nothing runs and a human decides.
    lab.run(2)
    [refused] = lab.proposals(ticket)
    assert (refused.action, refused.status, refused.gate) == ("remove_evict_leader", "refused", "params")
    assert "param 'store_id'" in (refused.detail or "") and "out of range" in (refused.detail or "")
    created = lab.pd_request("POST", "/pd/api/v1/schedulers", {"name": "balance-leader-scheduler"})
    assert created.status_code == 200
    lab.run_until("leader_balance", "", "ok", limit=40)
    assert lab.ticket(ticket.id).status == "resolved"


def test_leftover_evict_leader_is_found_and_removed_by_the_engine(tmp_path: Path) -> None:
    with tikv_lab(tmp_path, mode="execute") as lab:
        lab.run(10)
        # Someone evicted store 2 for maintenance and forgot it.
        assert lab.send("add_evict_leader", {"store_id": 2}).status_code == 200
        lab.run_until("leader_balance", "", "firing", limit=40)
        ticket = only_ticket(lab, "leader_balance")
        assert re.fullmatch(
            r"leader scores of Up stores range from 0 \(store 2\) to 3\d \(store [13]\); "
            r"evict-leader-scheduler holds store\(s\) 2",
            ticket.message,
        ), ticket.message
        lab.run(2)
        [proposal] = lab.proposals(ticket)
        assert (proposal.action, proposal.params, proposal.status) == ("remove_evict_leader", {"store_id": 2}, "succeeded")
        assert lab.cluster.evict_leader_stores == []
        lab.run_until("leader_balance", "", "ok", limit=40)
        assert lab.ticket(ticket.id).status == "resolved"
        assert "verified" in [e.kind for e in lab.monitor.store.events(ticket.id)]
        assert lab.unresolved() == []
        lab.quiet_except("leader_balance")


# --------------------------------------------------------------------------- PD failover


def test_pd_member_down_failover_keeps_observations_ok(lab: TikvLab) -> None:
    lab.run(10)
    lab.take_pd_down("pd1")
    report = lab.run(10)
    for name in ("stores", "schedulers", "evicted_stores", "replicas"):
        summary = report.observations[name]
        assert summary["ok"], summary
        assert list(summary["endpoint_errors"]) == [lab.pd_urls[0]]
        assert summary["endpoint_errors"][lab.pd_urls[0]].startswith("connection refused")
    assert lab.cluster.pd_leader == "pd2"
    lab.cluster.stop_store(3)
    lab.run_until("store_up", "3", "firing", limit=40)
    lab.quiet_except("store_up", transient=("leader_balance",))
    # Two of three PD members down: no etcd quorum, the last one answers 503. The observation
    # fails and the ticket stays open (on_error: keep), nothing resolves on missing data.
    lab.take_pd_down("pd2")
    report = lab.run(6)
    assert not report.observations["stores"]["ok"]
    assert "503" in report.observations["stores"]["error"]
    assert lab.status("store_up", "3") == "firing"
    assert [t.entity_key for t in lab.unresolved()] == ["3"]


# --------------------------------------------------------------------------- every action, for real


def test_every_action_request_is_accepted_by_pd_and_has_its_effect(tmp_path: Path) -> None:
    with tikv_lab(tmp_path, stores=4) as lab:
        lab.run(10)
        declared = {a.name for a in lab.loaded.config.actions}
        assert declared == {"add_evict_leader", "remove_evict_leader", "transfer_leader", "set_leader_weight", "set_store_offline"}

        assert lab.guard("add_evict_leader", {"store_id": 4})
        response = lab.send("add_evict_leader", {"store_id": 4})
        assert (response.status_code, response.json()) == (200, "The scheduler is created.")
        assert response.headers["content-type"] == "application/json; charset=UTF-8"
        lab.run(20, step=4)
        assert lab.cluster.evict_leader_stores == [4]
        assert lab.store_view(4)["status"]["leader_count"] == 0
        assert not lab.guard("add_evict_leader", {"store_id": 4})  # already evicted

        assert not lab.guard("remove_evict_leader", {"store_id": 3})  # not evicted: PD would 404
        assert lab.send("remove_evict_leader", {"store_id": 3}).status_code == 404
        assert lab.guard("remove_evict_leader", {"store_id": 4})
        assert lab.send("remove_evict_leader", {"store_id": 4}).status_code == 200
        lab.run(2)
        assert lab.value("evicted_stores") == {}
        assert "evict-leader-scheduler" not in lab.value("schedulers")

        region = next(r for r in sorted(lab.cluster.regions.values(), key=lambda r: r.id) if r.leader.store_id != 2 and r.voter_on(2))
        params = {"region_id": region.id, "to_store_id": 2}
        assert lab.guard("transfer_leader", params)
        response = lab.send("transfer_leader", params)
        assert (response.status_code, response.json()) == (200, "The operator is created.")
        lab.run(2)
        assert lab.cluster.regions[region.id].leader.store_id == 2

        params = {"store_id": 2, "leader": 2.5, "region": 1}
        assert lab.guard("set_leader_weight", params)
        response = lab.send("set_leader_weight", params)
        assert (response.status_code, response.json()) == (200, "The store's weight is updated.")
        lab.run(2)
        status = lab.store_view(2)["status"]
        assert status["leader_weight"] == 2.5 and status["leader_score"] == status["leader_count"] / 2.5

        offline = render_request(lab.action("set_store_offline"), {"store_id": 4})
        assert offline.line == "POST /pd/api/v1/store/4/state?state=Offline"
        assert lab.action("set_store_offline").approval == "required"
        assert lab.guard("set_store_offline", {"store_id": 4})
        response = lab.send("set_store_offline", {"store_id": 4})
        assert (response.status_code, response.json()) == (200, "The store's state is updated.")
        lab.run(2)
        assert lab.store_view(4)["store"]["state_name"] == "Offline"
        assert lab.store_view(4)["store"]["state"] == 1
        # With three Up stores left and max-replicas 3, the guard refuses what PD would refuse.
        assert not lab.guard("set_store_offline", {"store_id": 3})
        refused = lab.send("set_store_offline", {"store_id": 3})
        assert refused.status_code == 400 and "ErrStoresNotEnough" in refused.json()
        # Draining ends in Tombstone, which /stores hides: store_up fired on Offline, then resolves.
        lab.run(80, step=5)  # the simulator moves 4 peers per round
        assert [s["store"]["id"] for s in lab.value("stores")] == [1, 2, 3]
        assert lab.status("store_up", "4") == "ok"


def test_store_down_in_execute_mode_fences_then_removes_its_own_fence_and_opens_nothing_else(tmp_path: Path) -> None:
    """The store_down demo end to end: the engine keeps leaders off the dead store; once the store
    is Up again and its ticket resolved, the action's revert removes the evict-leader scheduler
    the engine added, on the same ticket, so no leftover fence opens a second (leader_balance)
    ticket, and the recovery is not credited to the fence as a fix unless its effect was seen."""
    with tikv_lab(tmp_path, mode="execute") as lab:
        lab.run(10)
        lab.cluster.stop_store(3)
        lab.run_until("store_up", "3", "firing", limit=40)
        lab.run(2)
        down = only_ticket(lab, "store_up")
        [evict] = lab.proposals(down)
        assert (evict.action, evict.params, evict.status) == ("add_evict_leader", {"store_id": 3}, "succeeded")
        assert lab.cluster.evict_leader_stores == [3]
        lab.run(2)
        assert "effect_confirmed" in [e.kind for e in lab.monitor.store.events(down.id)]  # PD holds the store

        lab.cluster.start_store(3)
        lab.run_until("store_up", "3", "ok", limit=20)
        ticket = lab.ticket(down.id)
        assert ticket.status == "resolved"
        lab.run(2)
        # The revert ran through the gate on the same ticket: the fence is gone, leaders return.
        [remove, _] = lab.proposals(down)  # newest first
        assert (remove.action, remove.params, remove.source, remove.status) == ("remove_evict_leader", {"store_id": 3}, "revert", "succeeded")
        assert lab.cluster.evict_leader_stores == [] and "evict-leader-scheduler" not in lab.cluster.schedulers
        kinds = [e.kind for e in lab.monitor.store.events(down.id)]
        assert kinds[kinds.index("verified"):] == ["verified", "resolved", "incident_resolved", "approved", "executing", "succeeded", "reverted"]
        lab.run(60)  # longer than leader_balance's `for`
        assert [t.invariant for t in lab.tickets()] == ["store_up"]  # no second incident
        assert lab.store_view(3)["status"]["leader_count"] >= 15
        lab.quiet_except("store_up", transient=("leader_balance",))
