"""What the simulator exports at /metrics: each TiKV's and each PD member's series, with TiKV's
and PD's names, labels and bucket layout, in a text exposition Prometheus' own checker accepts."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine.observe.metrics_source import histogram_quantile, normalize_buckets
from subjects.tikv.pdsim.model import Cluster
from subjects.tikv.pdsim.pd_api import create_pd_app
from subjects.tikv.pdsim.testing import FakeClock, serve
from subjects.tikv.pdsim.tikv_status import create_tikv_status_app
from subjects.tikv.pdsim.traffic import GRPC_BUCKETS
from tests.promtool import metrics_lint, requires_promtool

# TiKV's own name (a gauge called *_count): promtool's lint finds it in a real TiKV's scrape too.
TIKV_NAME_LINT = 'tikv_raftstore_region_count non-histogram and non-summary metrics should not have "_count" suffix'


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def cluster(clock: FakeClock) -> Cluster:
    return Cluster(clock, stores=3, regions=60, seed=3)


@pytest.fixture
def urls(cluster: Cluster) -> Iterator[dict[str, str]]:
    """Base URLs of every simulated process: pd1..pd3 and tikv1..tikv3."""
    apps = {name: create_pd_app(cluster, name) for name in ("pd1", "pd2", "pd3")}
    apps.update({f"tikv{i}": create_tikv_status_app(cluster, i) for i in cluster.stores})
    with contextlib.ExitStack() as stack:
        yield {name: stack.enter_context(serve(app)) for name, app in apps.items()}


def run(cluster: Cluster, clock: FakeClock, seconds: int) -> None:
    for _ in range(seconds):
        clock.advance(1)
        cluster.tick()


def scrape(url: str) -> str:
    response = httpx.get(url + "/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return response.text


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_each_tikv_exports_its_own_space_regions_and_grpc_histogram(urls: dict[str, str], cluster: Cluster, clock: FakeClock) -> None:
    run(cluster, clock, 10)
    for store_id in cluster.stores:
        found = samples(scrape(urls[f"tikv{store_id}"]))
        store = cluster.stores[store_id]
        assert found[("tikv_store_size_bytes", (("type", "capacity"),))] == store.capacity
        assert found[("tikv_store_size_bytes", (("type", "available"),))] == store.available
        assert found[("tikv_raftstore_region_count", (("type", "region"),))] == 60
        assert found[("process_start_time_seconds", ())] == store.start_timestamp
        # No instance or job label: Prometheus adds them from the target.
        assert all(k not in dict(labels) for _, labels in found for k in ("instance", "job"))
        buckets = sorted(
            (float(dict(labels)["le"]), value)
            for (name, labels), value in found.items()
            if name == "tikv_grpc_msg_duration_seconds_bucket" and dict(labels)["type"] == "kv_get"
        )
        assert [le for le, _ in buckets] == [*GRPC_BUCKETS, float("inf")]  # TiKV's 0.5 ms x 2^n, 20 buckets
        assert buckets[-1][1] == found[("tikv_grpc_msg_duration_seconds_count", (("type", "kv_get"),))] > 0
    leaders = sum(samples(scrape(urls[f"tikv{i}"]))[("tikv_raftstore_region_count", (("type", "leader"),))] for i in cluster.stores)
    assert leaders == 60


def test_a_hot_store_shifts_its_own_histogram_only(urls: dict[str, str], cluster: Cluster, clock: FakeClock) -> None:
    run(cluster, clock, 5)

    def p99(store: str, before: dict[tuple[str, tuple[tuple[str, str], ...]], float] | None = None) -> float | None:
        found = samples(scrape(urls[store]))
        raw = [
            (float(dict(labels)["le"]), value - (before or {}).get((name, labels), 0.0))
            for (name, labels), value in found.items()
            if name == "tikv_grpc_msg_duration_seconds_bucket" and dict(labels)["type"] == "kv_get"
        ]
        return histogram_quantile(0.99, normalize_buckets(raw))

    calm = {name: samples(scrape(urls[name])) for name in ("tikv1", "tikv2")}
    cluster.set_extra_latency(2, 0.3)
    run(cluster, clock, 10)
    slow = p99("tikv2", calm["tikv2"])
    fast = p99("tikv1", calm["tikv1"])
    assert slow is not None and slow > 0.3
    assert fast is not None and fast < 0.05


def test_only_the_pd_leader_exports_cluster_statistics(urls: dict[str, str], cluster: Cluster, clock: FakeClock) -> None:
    run(cluster, clock, 3)
    leader = samples(scrape(urls["pd1"]))
    assert leader[("etcd_server_is_leader", ())] == 1
    assert leader[("pd_cluster_status", (("type", "store_up_count"),))] == 3
    assert leader[("pd_regions_status", (("type", "down-peer-region-count"),))] == 0
    assert leader[("pd_scheduler_store_status", (("address", "tikv1:20160"), ("store", "1"), ("type", "leader_count")))] >= 0
    for follower in ("pd2", "pd3"):
        assert samples(scrape(urls[follower])) == {("etcd_server_is_leader", ()): 0}
    cluster.stop_store(3)
    run(cluster, clock, 25)
    assert samples(scrape(urls["pd1"]))[("pd_cluster_status", (("type", "store_disconnected_count"),))] == 1
    cluster.set_member_down("pd1", True)
    assert samples(scrape(urls["pd2"]))[("etcd_server_is_leader", ())] == 1


@requires_promtool
def test_promtool_accepts_live_scrapes_of_a_simulated_tikv_and_pd(urls: dict[str, str], cluster: Cluster, clock: FakeClock) -> None:
    run(cluster, clock, 5)
    assert metrics_lint(scrape(urls["tikv1"])) == [TIKV_NAME_LINT]
    assert metrics_lint(scrape(urls["pd1"])) == []
    assert metrics_lint(scrape(urls["pd2"])) == []
