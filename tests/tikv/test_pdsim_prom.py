from __future__ import annotations

import math
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from subjects.tikv.pdsim.model import Cluster
from subjects.tikv.pdsim.prom_api import create_prom_app
from subjects.tikv.pdsim.promql import PromQLError, bucket_quantile, evaluate
from subjects.tikv.pdsim.testing import FakeClock, serve

P99 = "histogram_quantile(0.99, sum(rate(tikv_grpc_msg_duration_seconds_bucket[1m])) by (le, instance))"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def cluster(clock: FakeClock) -> Cluster:
    return Cluster(clock, stores=3, regions=60, seed=3)


@pytest.fixture
def prom(cluster: Cluster) -> Iterator[httpx.Client]:
    with serve(create_prom_app(cluster)) as url, httpx.Client(base_url=url) as client:
        yield client


def run(cluster: Cluster, clock: FakeClock, seconds: int) -> None:
    for _ in range(seconds):
        clock.advance(1)
        cluster.tick()


def query(prom: httpx.Client, expr: str) -> dict[str, str]:
    resp = prom.get("/api/v1/query", params={"query": expr})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "success" and body["data"]["resultType"] == "vector"
    return {r["metric"].get("instance", ""): r["value"][1] for r in body["data"]["result"]}


def test_p99_per_instance_rises_under_hot_store(prom: httpx.Client, cluster: Cluster, clock: FakeClock) -> None:
    run(cluster, clock, 70)
    before = {k: float(v) for k, v in query(prom, P99).items()}
    assert set(before) == {"tikv1:20180", "tikv2:20180", "tikv3:20180"}
    assert all(0.001 < v < 0.05 for v in before.values())
    cluster.set_extra_latency(2, 0.3)
    run(cluster, clock, 70)
    after = {k: float(v) for k, v in query(prom, P99).items()}
    assert after["tikv2:20180"] > 0.3 and after["tikv1:20180"] < 0.05


def test_nan_when_window_has_no_requests(prom: httpx.Client, cluster: Cluster, clock: FakeClock) -> None:
    cluster.skew_leaders(1)
    cluster.remove_scheduler("balance-leader-scheduler")
    run(cluster, clock, 70)
    p99 = query(prom, P99)
    assert p99["tikv2:20180"] == "NaN" and p99["tikv1:20180"] != "NaN"


def test_response_shape_gauges_and_matching(prom: httpx.Client, cluster: Cluster, clock: FakeClock) -> None:
    run(cluster, clock, 5)
    body = prom.get("/api/v1/query", params={"query": 'tikv_store_size_bytes{type="capacity",instance="tikv1:20180"}'}).json()
    result = body["data"]["result"]
    assert result[0]["metric"] == {
        "__name__": "tikv_store_size_bytes", "instance": "tikv1:20180", "job": "tikv", "type": "capacity",
    }  # fmt: skip
    ts, value = result[0]["value"]
    assert isinstance(ts, float) and value == str(cluster.stores[1].capacity)
    ratio = query(
        prom,
        'sum(tikv_store_size_bytes{type="available"}) by (instance) / sum(tikv_store_size_bytes{type="capacity"}) by (instance)',
    )
    assert all(0.5 < float(v) < 0.8 for v in ratio.values()) and len(ratio) == 3
    leaders = query(prom, 'sum(tikv_raftstore_region_count{type="leader"}) by (instance)')
    assert sum(float(v) for v in leaders.values()) == 60
    assert query(prom, 'sum(pd_cluster_status{type="store_up_count"})') == {"": "3"}
    assert query(prom, 'max(pd_regions_status{type=~"down-peer.*"}) by (type)') == {"": "0"}
    assert query(prom, 'up{job="tikv"} == 0') == {}
    scalar = prom.get("/api/v1/query", params={"query": "2 * 3 + 1"}).json()["data"]
    assert scalar["resultType"] == "scalar" and scalar["result"][1] == "7"


def test_stopped_store_goes_stale_and_counts_disconnected(prom: httpx.Client, cluster: Cluster, clock: FakeClock) -> None:
    cluster.stop_store(3)
    run(cluster, clock, 25)
    assert query(prom, 'up{job="tikv"} == 0') == {"tikv3:20180": "0"}
    assert "tikv3:20180" not in query(prom, "tikv_store_size_bytes{type='capacity'}")
    assert query(prom, 'sum(pd_cluster_status{type="store_disconnected_count"})') == {"": "1"}


def test_bad_queries_are_bad_data(prom: httpx.Client) -> None:
    for expr in ["sum(", "rate(x)", "foo{a=b}", "topk(3, x)", ""]:
        resp = prom.get("/api/v1/query", params={"query": expr})
        assert resp.status_code == 400, expr
        body = resp.json()
        assert body["status"] == "error" and body["errorType"] == "bad_data" and body["error"]


def test_rate_is_honest_over_counter_history(cluster: Cluster, clock: FakeClock) -> None:
    run(cluster, clock, 61)
    qps = evaluate("sum(rate(tikv_grpc_msg_duration_seconds_count[1m]))", cluster.history, clock())
    assert isinstance(qps, list) and abs(qps[0].value - cluster.settings.total_qps) < 0.05 * cluster.settings.total_qps
    with pytest.raises(PromQLError):
        evaluate("a + on(instance) group_left b", cluster.history, clock())


@given(st.lists(st.integers(min_value=0, max_value=1000), min_size=1, max_size=10), st.floats(min_value=0, max_value=1))
def test_bucket_quantile_stays_within_bounds(increments: list[int], q: float) -> None:
    bounds = [0.001 * 2**i for i in range(len(increments))]
    cumulative = [sum(increments[: i + 1]) for i in range(len(increments))]
    buckets = list(zip(bounds, cumulative)) + [(math.inf, cumulative[-1])]
    value = bucket_quantile(q, buckets)
    if cumulative[-1] == 0:
        assert math.isnan(value)
    else:
        assert 0 <= value <= bounds[-1]
