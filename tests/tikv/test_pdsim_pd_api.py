from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from subjects.tikv.pdsim.model import Cluster
from subjects.tikv.pdsim.pd_api import create_pd_app
from subjects.tikv.pdsim.testing import FakeClock, serve

API = "/pd/api/v1"
PRETTY = "application/json; charset=UTF-8"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def cluster(clock: FakeClock) -> Cluster:
    return Cluster(clock, stores=3, regions=60, seed=7)


@pytest.fixture
def pd(cluster: Cluster) -> Iterator[httpx.Client]:
    with serve(create_pd_app(cluster, "pd1")) as url, httpx.Client(base_url=url + API) as client:
        yield client


def run(cluster: Cluster, clock: FakeClock, seconds: float, step: float = 1.0) -> None:
    elapsed = 0.0
    while elapsed < seconds:
        clock.advance(step)
        cluster.tick()
        elapsed += step


def test_up_store_has_pd_field_order_and_no_state_key(pd: httpx.Client) -> None:
    resp = pd.get("/stores")
    assert resp.headers["content-type"] == PRETTY
    assert resp.text.startswith('{\n  "count": 3,\n  "stores": [\n')
    body = resp.json()
    store = body["stores"][0]
    assert list(store["store"]) == [
        "id", "address", "version", "peer_address", "status_address", "git_hash",
        "start_timestamp", "deploy_path", "last_heartbeat", "node_state", "state_name",
    ]  # fmt: skip
    assert "state" not in store["store"]
    assert store["store"]["node_state"] == 1
    assert store["store"]["state_name"] == "Up"
    assert store["store"]["address"] == "tikv1:20160"
    assert list(store["status"])[:11] == [
        "capacity", "available", "used_size", "leader_count", "leader_weight", "leader_score",
        "leader_size", "region_count", "region_weight", "region_score", "region_size",
    ]  # fmt: skip
    assert store["status"]["capacity"] == "311.7GiB"
    assert store["status"]["leader_weight"] == 1 and '"leader_weight": 1,' in resp.text
    assert sum(s["status"]["leader_count"] for s in body["stores"]) == 60


def test_state_name_turns_disconnected_then_down(pd: httpx.Client, cluster: Cluster, clock: FakeClock) -> None:
    cluster.stop_store(3)
    run(cluster, clock, 15)
    assert pd.get("/store/3").json()["store"]["state_name"] == "Up"
    run(cluster, clock, 10)
    s3 = pd.get("/store/3").json()
    assert s3["store"]["state_name"] == "Disconnected"
    assert s3["status"]["leader_count"] == 0 and s3["status"]["region_count"] == 60
    assert pd.post("/config/schedule", json={"max-store-down-time": "1m"}).json() == "The config is updated."
    assert pd.get("/config/schedule").json()["max-store-down-time"] == "1m0s"
    run(cluster, clock, 40)
    assert pd.get("/store/3").json()["store"]["state_name"] == "Down"
    assert [s["store"]["id"] for s in pd.get("/stores/check", params={"state": "down"}).json()["stores"]] == [3]
    # Up stores keep heartbeating every 10 s.
    assert pd.get("/store/1").json()["store"]["state_name"] == "Up"


def test_down_peers_after_max_peer_down_duration(pd: httpx.Client, cluster: Cluster, clock: FakeClock) -> None:
    cluster.stop_store(2)
    run(cluster, clock, 590, step=10)
    assert pd.get("/regions/check/down-peer").content == b'{"count":0,"regions":[]}'
    run(cluster, clock, 30, step=10)
    resp = pd.get("/regions/check/down-peer")
    assert resp.headers["content-type"] == "application/octet-stream"
    assert b": " not in resp.content and b"\n" not in resp.content
    body = resp.json()
    assert body["count"] == 60
    region = body["regions"][0]
    assert list(region)[:8] == ["id", "start_key", "end_key", "epoch", "peers", "leader", "down_peers", "pending_peers"]
    assert region["down_peers"][0]["peer"]["store_id"] == 2
    assert region["down_peers"][0]["down_seconds"] > 600
    assert region["leader"]["store_id"] != 2


def test_errors_are_json_strings_with_pd_codes(pd: httpx.Client) -> None:
    resp = pd.get("/store/99")
    assert resp.status_code == 404 and resp.headers["content-type"] == PRETTY
    assert resp.json() == "[PD:core:ErrStoreNotFound]store 99 not found"
    bad = pd.get("/store/abc")
    assert bad.status_code == 400 and bad.json()["code"] == "input"
    assert pd.post("/schedulers", json={"name": "nope"}).json() == "unknown scheduler"
    existed = pd.post("/schedulers", json={"name": "balance-leader-scheduler"})
    assert existed.status_code == 400
    assert existed.json() == "[PD:scheduler:ErrSchedulerExisted]scheduler existed"
    missing = pd.delete("/schedulers/shuffle-leader-scheduler")
    assert missing.status_code == 404
    assert missing.json() == "[PD:scheduler:ErrSchedulerNotFound]scheduler not found"
    assert pd.post("/store/1/state", params={"state": "Tombstone"}).json() == "invalid state Tombstone"
    assert pd.post("/store/1/weight", json={"leader": 2}).json() == "region weight unset"
    assert pd.get("/nope").status_code == 404


def test_evict_leader_drains_in_batches_and_delete_by_store(pd: httpx.Client, cluster: Cluster, clock: FakeClock) -> None:
    pd.delete("/schedulers/balance-leader-scheduler")
    resp = pd.post("/schedulers", json={"name": "evict-leader-scheduler", "store_id": 1})
    assert resp.json() == "The scheduler is created."
    assert pd.post("/schedulers", json={"name": "evict-leader-scheduler", "store_id": 2}).json() == (
        "The scheduler has been applied to the store."
    )
    assert pd.get("/scheduler-config/evict-leader-scheduler/list").json() == {
        "store-id-ranges": {"1": [{"start-key": "", "end-key": ""}], "2": [{"start-key": "", "end-key": ""}]},
        "batch": 3,
    }
    before = pd.get("/store/1").json()["status"]["leader_count"]
    run(cluster, clock, 1)
    assert pd.get("/store/1").json()["status"]["leader_count"] == before - 3
    run(cluster, clock, 10)
    assert pd.get("/store/1").json()["status"]["leader_count"] == 0
    assert pd.get("/store/3").json()["status"]["leader_count"] == 60
    assert pd.post("/operators", json={"name": "transfer-leader", "region_id": 4, "to_store_id": 1}).json() == (
        "cannot create operator: target leader is not allowed"
    )
    assert pd.delete("/schedulers/evict-leader-scheduler-1").json() is None
    assert "evict-leader-scheduler" in pd.get("/schedulers").json()
    assert pd.delete("/schedulers/evict-leader-scheduler-2").status_code == 200
    assert "evict-leader-scheduler" not in pd.get("/schedulers").json()


def test_balance_leader_honours_weights(pd: httpx.Client, cluster: Cluster, clock: FakeClock) -> None:
    cluster.skew_leaders(1)
    assert pd.get("/store/1").json()["status"]["leader_count"] == 60
    assert pd.post("/store/1/weight", json={"leader": 2, "region": 1}).json() == "The store's weight is updated."
    s1 = pd.get("/store/1").json()["status"]
    assert s1["leader_weight"] == 2 and s1["leader_score"] == 30
    run(cluster, clock, 30)
    status = {i: pd.get(f"/store/{i}").json()["status"] for i in (1, 2, 3)}
    scores = [s["leader_score"] for s in status.values()]
    assert max(scores) - min(scores) <= 5  # PD's leader tolerance
    assert status[1]["leader_count"] >= 2 * status[2]["leader_count"] - 5
    assert status[1]["leader_count"] < 60
    # Weight 0 makes the store's score huge, so balance moves every leader away.
    pd.post("/store/1/weight", json={"leader": 0, "region": 1})
    run(cluster, clock, 30)
    assert pd.get("/store/1").json()["status"]["leader_count"] == 0


def test_transfer_leader_operator_completes_next_tick(pd: httpx.Client, cluster: Cluster, clock: FakeClock) -> None:
    region = pd.get("/region/id/4").json()
    target = next(p["store_id"] for p in region["peers"] if p["store_id"] != region["leader"]["store_id"])
    body = {"name": "transfer-leader", "region_id": 4, "to_store_id": target}
    assert pd.post("/operators", json=body).json() == "The operator is created."
    ops = pd.get("/operators").json()
    assert len(ops) == 1 and ops[0].startswith("admin-transfer-leader {transfer leader: store ")
    assert pd.get("/operators/4").json().startswith("status: RUNNING, operator: admin-transfer-leader")
    run(cluster, clock, 1)
    assert pd.get("/region/id/4").json()["leader"]["store_id"] == target
    assert pd.get("/operators").json() == []
    assert pd.get("/operators/4").json().startswith("status: SUCCESS")
    assert pd.post("/operators", json={"name": "transfer-leader", "region_id": 4}).json() == (
        "missing store id to transfer leader to"
    )
    assert pd.post("/operators", json={"name": "transfer-leader", "region_id": 9999, "to_store_id": 1}).json() == (
        "[PD:region:ErrRegionNotFound]region 9999 not found"
    )


def test_offline_needs_spare_store_then_tombstones(clock: FakeClock) -> None:
    cluster = Cluster(clock, stores=4, regions=20, seed=1)
    with serve(create_pd_app(cluster, "pd1")) as url, httpx.Client(base_url=url + API) as pd:
        assert pd.post("/store/4/state", params={"state": "Offline"}).json() == "The store's state is updated."
        s4 = pd.get("/store/4").json()["store"]
        assert (s4["state"], s4["node_state"], s4["state_name"]) == (1, 2, "Offline")
        assert pd.get("/regions/check/offline-peer").json()["count"] > 0
        refused = pd.delete("/store/3")
        assert refused.status_code == 400
        run(cluster, clock, 20)
        assert [s["store"]["id"] for s in pd.get("/stores").json()["stores"]] == [1, 2, 3]
        tomb = pd.get("/stores", params={"state": 2}).json()["stores"][0]["store"]
        assert (tomb["state"], tomb["node_state"], tomb["state_name"]) == (2, 3, "Tombstone")
        assert pd.post("/store/4/state", params={"state": "Up"}).status_code == 410


def test_members_health_and_failover(pd: httpx.Client, cluster: Cluster) -> None:
    members = pd.get("/members").json()
    assert list(members) == ["header", "members", "leader", "etcd_leader"]
    assert members["leader"]["name"] == "pd1" and members["members"][0]["client_urls"] == ["http://pd1:2379"]
    assert members["header"]["cluster_id"] > 2**53
    cluster.set_member_down("pd2", True)
    assert [h["health"] for h in pd.get("/health").json()] == [True, False, True]
    cluster.set_member_down("pd1", True)
    assert pd.get("/health").status_code == 503  # this front-end is pd1, now down
    assert cluster.pd_leader is None  # 1 of 3 members: no quorum
    cluster.set_member_down("pd2", False)
    assert cluster.pd_leader == "pd2"


def test_regions_count_and_replicate_config(pd: httpx.Client) -> None:
    count = pd.get("/regions/count")
    assert count.headers["content-type"] == PRETTY and count.json() == {"count": 60, "regions": None}
    regions = pd.get("/regions").json()["regions"]
    assert regions[0]["start_key"] == "" and regions[-1]["end_key"] == ""
    assert all(r["end_key"] == n["start_key"] for r, n in zip(regions, regions[1:]))
    assert pd.get("/config/replicate").json()["enable-placement-rules"] == "true"
    assert pd.post("/config/replicate", json={"location-labels": "zone,host"}).status_code == 200
    assert pd.get("/config/replicate").json()["location-labels"] == "zone,host"
    assert pd.get("/cluster").json()["max_peer_count"] == 3
    assert pd.get("/ping").content == b""
