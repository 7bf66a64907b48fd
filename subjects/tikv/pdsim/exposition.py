"""What the simulated processes serve at `/metrics`, in the Prometheus text format.

Each TiKV serves its own series on its status port (`tikv_*`, `process_start_time_seconds`) and
each PD member on its client port (`etcd_server_is_leader`; the cluster statistics `pd_*` only
on the PD leader, as PD computes them there). No `instance` or `job` label: Prometheus adds them
from the scrape target, as it does for the real processes. Names, labels and bucket layouts are
those of TiKV and PD v8.5 (shared/reference/tikv-pd-api.md §9).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString
from starlette.responses import Response

from .constants import NODE_PREPARING, NODE_REMOVED, NODE_REMOVING, NODE_SERVING, STATE_TOMBSTONE
from .model import REGION_CHECKS
from .traffic import GRPC_BUCKETS

if TYPE_CHECKING:
    from .model import Cluster, PdMember, Store, StoreStats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # what TiKV and PD serve
# pd_regions_status types: PD's region checks, "-region" dropped ("empty-region" -> "empty-region-count").
REGION_STATUS_TYPES = tuple(check.removesuffix("-region") for check in REGION_CHECKS)


def tikv_metrics(cluster: Cluster, store: Store) -> list[Metric]:
    """One TiKV's own series, as its status server exports them."""
    stats = cluster.store_stats()[store.id]
    start = GaugeMetricFamily("process_start_time_seconds", "Start time of the process since unix epoch in seconds.")
    start.add_metric([], store.start_timestamp)
    size = GaugeMetricFamily("tikv_store_size_bytes", "Size of storage.", labels=["type"])
    for kind, value in (("capacity", store.capacity), ("available", store.available), ("used", store.used)):
        size.add_metric([kind], value)
    regions = GaugeMetricFamily("tikv_raftstore_region_count", "Number of regions collected in region_collector.", labels=["type"])
    regions.add_metric(["region"], stats.region_count)
    regions.add_metric(["leader"], stats.leader_count)
    grpc = HistogramMetricFamily("tikv_grpc_msg_duration_seconds", "Bucketed histogram of grpc server messages.", labels=["type"])
    for kind, hist in sorted(cluster.traffic.of_store(store.id).items()):
        buckets = [(floatToGoString(le), count) for le, count in zip(GRPC_BUCKETS, hist.buckets)]
        grpc.add_metric([kind], buckets + [("+Inf", hist.count)], hist.total)
    return [start, size, regions, grpc]


def pd_metrics(cluster: Cluster, member: PdMember) -> list[Metric]:
    """One PD member's series: leadership everywhere, cluster statistics on the leader only."""
    is_leader = member.name == cluster.pd_leader
    leader = GaugeMetricFamily("etcd_server_is_leader", "Whether or not this member is a leader. 1 if is, 0 otherwise.")
    leader.add_metric([], 1 if is_leader else 0)
    if not is_leader:
        return [leader]
    stats = cluster.store_stats()
    status = GaugeMetricFamily("pd_cluster_status", "Status of the cluster.", labels=["type"])
    for kind, value in _cluster_status(cluster, stats).items():
        status.add_metric([kind], value)
    counts = {f"{check}-region-count": 0 for check in REGION_STATUS_TYPES}
    for region in cluster.regions.values():
        for flag in cluster.region_flags(region):
            counts[f"{flag.removesuffix('-region')}-region-count"] += 1
    regions = GaugeMetricFamily("pd_regions_status", "Status of the regions.", labels=["type"])
    for kind, value in counts.items():
        regions.add_metric([kind], value)
    per_store = GaugeMetricFamily("pd_scheduler_store_status", "Store status for schedule", labels=["address", "store", "type"])
    for store in cluster.stores.values():
        if store.state == STATE_TOMBSTONE:
            continue
        st = stats[store.id]
        for kind, value in (
            ("leader_count", st.leader_count),
            ("region_count", st.region_count),
            ("leader_score", cluster.leader_score(store, st)),
            ("region_score", cluster.region_score(store, st)),
            ("leader_size", st.leader_size),
            ("region_size", st.region_size),
            ("store_available", store.available),
            ("store_used", store.used),
            ("store_capacity", store.capacity),
        ):
            per_store.add_metric([store.address, str(store.id), kind], value)
    return [leader, status, regions, per_store]


def _cluster_status(cluster: Cluster, stats: dict[int, StoreStats]) -> dict[str, float]:
    names = {s.id: cluster.state_name(s) for s in cluster.stores.values()}
    live = [s for s in cluster.stores.values() if s.state != STATE_TOMBSTONE]
    return {
        "store_up_count": sum(names[s.id] == "Up" for s in live),
        "store_disconnected_count": sum(names[s.id] == "Disconnected" for s in live),
        "store_slow_count": sum(s.slow_score >= 80 for s in live),
        "store_down_count": sum(names[s.id] == "Down" for s in live),
        "store_unhealth_count": sum(
            cluster.down_time(s) > cluster.settings.unhealthy_after and names[s.id] != "Down" for s in live
        ),
        "store_offline_count": sum(names[s.id] == "Offline" for s in live),
        "store_tombstone_count": sum(names[s.id] == "Tombstone" for s in cluster.stores.values()),
        "store_low_space_count": sum(cluster.is_low_space(s) for s in live),
        "store_preparing_count": sum(s.node_state == NODE_PREPARING for s in live),
        "store_serving_count": sum(s.node_state == NODE_SERVING for s in live),
        "store_removing_count": sum(s.node_state == NODE_REMOVING for s in live),
        "store_removed_count": sum(s.node_state == NODE_REMOVED for s in cluster.stores.values()),
        "region_count": len(cluster.regions),
        "leader_count": sum(st.leader_count for st in stats.values()),
        "witness_count": 0,
        "learner_count": sum(st.learner_count for st in stats.values()),
        "storage_size": sum(s.used for s in live),
        "storage_capacity": sum(s.capacity for s in live),
    }


class _Families(Collector):
    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def render(families: Iterable[Metric]) -> bytes:
    """The text exposition (format 0.0.4) of `families`."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return generate_latest(registry)


def metrics_response(families: Iterable[Metric]) -> Response:
    return Response(render(families), headers={"Content-Type": CONTENT_TYPE})
