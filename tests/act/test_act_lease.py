"""Two Monitors on one store, in one test process (each with its own Store connection, as two
replicas have), on both backends: the leader writes and acts, the follower observes and
evaluates and writes nothing; the tick report, the metrics and the live view say who leads; a
takeover continues the store's ticket and timers; `opctl status` prints it all."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from engine.cli import main
from engine.view import leader_text
from tests.act.act_support import SECRET, START, api, config_data, nodes, open_engine
from tests.json_server import JsonServer
from tests.waiting import wait_for


@pytest.fixture
def server() -> Iterator[JsonServer]:
    yield from api()


def data(url: str) -> dict:  # type: ignore[type-arg]
    return config_data(url, diagnosis={"provider": "runbook"}, mode="approve", lease={"ttl": "5m"})


def test_only_the_leader_writes_and_acts_and_every_report_says_who_leads(tmp_path: Path, server: JsonServer, store_at: Path | str) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    leader = open_engine(tmp_path / "a", data(server.url), store_at=store_at, replica="a")
    follower = None
    try:
        first = leader.tick()
        assert first.as_json()["leader"] == {**first.as_json()["leader"], "replica": "a", "leader": "a", "leading": True, "token": 1}
        follower = open_engine(tmp_path / "b", data(server.url), store_at=store_at, replica="b")
        seen = follower.tick()
        assert seen.leading is False and seen.as_json()["leader"]["leader"] == "a" and seen.actions == []
        assert seen.invariants["node_up"]["firing"] == 1  # it evaluates: a takeover is warm
        [ticket] = leader.store.tickets(limit=10)
        events = len(leader.store.events(limit=10_000))
        for at in range(1, 4):
            follower.tick(START + at)
        assert len(leader.store.events(limit=10_000)) == events  # the follower wrote nothing
        assert leader.proposals() and all(p.ticket_id == ticket.id for p in leader.proposals())
        sample = follower.monitor.metrics.registry.get_sample_value
        assert sample("opctl_leader", {"replica": "b"}) == 0.0
        assert leader.monitor.metrics.registry.get_sample_value("opctl_leader", {"replica": "a"}) == 1.0
        assert leader_text(first.lease) == "this replica (a, token 1)"
        assert leader_text(seen.lease) == "a (token 1); b follows"
    finally:
        leader.close()
        if follower is not None:
            follower.close()


def test_a_takeover_continues_the_ticket_of_the_store(tmp_path: Path, server: JsonServer, store_at: Path | str) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    leader = open_engine(tmp_path / "a", data(server.url), store_at=store_at, replica="a")
    leader.tick()
    [ticket] = leader.store.tickets(limit=10)
    leader.store.release_lease("a")  # it stops (here cleanly: the lease lapses at once)
    leader.close()
    server.set("/v1/nodes", nodes())  # while nobody led, the node came back
    follower = open_engine(tmp_path / "b", data(server.url), store_at=store_at, replica="b")
    try:
        took = wait_for(lambda: (report := follower.tick(START + 5)).leading and report)
        assert took.lease is not None and took.lease.token == 2 and took.lease.holder == "b"
        assert [t["id"] for t in took.resolved] == [ticket.id]  # the same ticket, resolved by the new leader
        [again] = follower.store.tickets(limit=10)
        assert again.id == ticket.id and again.status == "resolved"
    finally:
        follower.close()


def test_opctl_status_prints_the_leader_token_mode_switch_and_what_waits(tmp_path: Path, server: JsonServer, store_at: Path | str) -> None:
    leader = open_engine(tmp_path, data(server.url), store_at=store_at, replica="a")
    try:
        leader.tick()
        config = str(tmp_path / "opctl.yaml")
        shown = CliRunner().invoke(main, ["status", config], env={"API_TOKEN": SECRET})
        assert shown.exit_code == 0, shown.output
        lines = shown.output.splitlines()
        assert lines[1].startswith("leader: a (token 1; lease expires at ")
        assert lines[2:] == [
            "mode: approve (from the config)",
            "kill switch: off",
            "open tickets: 1 (1 open, 0 verifying, 0 escalated); 1 still firing",
            "pending approvals: 1",
            lines[6],
        ] and lines[6].startswith("  proposal #1 (deregister_node) for ticket #1, expires ")
        as_json = CliRunner().invoke(main, ["status", config, "--json"], env={"API_TOKEN": SECRET})
        assert as_json.exit_code == 0
        found = json.loads(as_json.output)
        assert found["leader"] == "a" and found["token"] == 1 and found["expires_in_s"] > 0 and found["lease_holder"] == "a"
        assert found["mode"]["mode"] == "approve" and found["kill_switch"] is None
        assert found["open_tickets"] == 1 and found["incidents"] == 1
        assert [p["proposal"] for p in found["pending_approvals"]] == [1]
    finally:
        leader.close()


def test_opctl_status_without_a_store_says_where_it_looked(tmp_path: Path, server: JsonServer) -> None:
    path = tmp_path / "opctl.yaml"
    path.write_text(yaml.safe_dump(data(server.url)))
    shown = CliRunner().invoke(main, ["status", str(path)], env={"API_TOKEN": SECRET})
    assert shown.exit_code == 1 and "no store at" in shown.output and "Traceback" not in shown.output
