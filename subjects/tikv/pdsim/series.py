"""One Prometheus scrape of the simulated cluster: every series PD and TiKV would expose.

A TiKV whose process is stopped is not scraped at all (its series go stale, `up` is 0); only the
PD leader exports cluster statistics, as the official alert rules assume.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .constants import NODE_PREPARING, NODE_REMOVED, NODE_REMOVING, NODE_SERVING, STATE_TOMBSTONE
from .traffic import GRPC_BUCKETS

if TYPE_CHECKING:
    from .model import Cluster, StoreStats

SeriesKey = tuple[tuple[str, str], ...]


def series_key(name: str, labels: dict[str, str]) -> SeriesKey:
    return tuple(sorted({**labels, "__name__": name}.items()))


def _le(bound: float) -> str:
    return repr(bound)


def scrape(cluster: Cluster) -> dict[SeriesKey, float]:
    out: dict[SeriesKey, float] = {}

    def put(name: str, value: float, **labels: str) -> None:
        out[series_key(name, labels)] = float(value)

    stats = cluster.store_stats()
    for store in cluster.stores.values():
        instance = store.status_address
        scraped = store.alive and store.state != STATE_TOMBSTONE
        put("up", 1 if scraped else 0, instance=instance, job="tikv")
        if not scraped:
            continue
        base = {"instance": instance, "job": "tikv"}
        put("process_start_time_seconds", store.start_timestamp, **base)
        for kind, value in (("capacity", store.capacity), ("available", store.available), ("used", store.used)):
            put("tikv_store_size_bytes", value, type=kind, **base)
        st = stats[store.id]
        put("tikv_raftstore_region_count", st.region_count, type="region", **base)
        put("tikv_raftstore_region_count", st.leader_count, type="leader", **base)
    for (instance, kind), hist in cluster.traffic.histograms.items():
        base = {"instance": instance, "job": "tikv", "type": kind}
        for bound, count in zip(GRPC_BUCKETS, hist.buckets):
            put("tikv_grpc_msg_duration_seconds_bucket", count, le=_le(bound), **base)
        put("tikv_grpc_msg_duration_seconds_bucket", hist.count, le="+Inf", **base)
        put("tikv_grpc_msg_duration_seconds_sum", hist.total, **base)
        put("tikv_grpc_msg_duration_seconds_count", hist.count, **base)

    for member in cluster.members:
        instance = member.client_url.split("://", 1)[-1]
        put("up", 0 if member.down else 1, instance=instance, job="pd")
        if member.down:
            continue
        is_leader = member.name == cluster.pd_leader
        put("etcd_server_is_leader", 1 if is_leader else 0, instance=instance, job="pd")
        if not is_leader:
            continue
        base = {"instance": instance, "job": "pd"}
        for kind, value in _cluster_status(cluster, stats).items():
            put("pd_cluster_status", value, type=kind, **base)
        counts = {f"{check}-region-count": 0 for check in _REGION_STATUS_TYPES}
        for region in cluster.regions.values():
            for flag in cluster.region_flags(region):
                counts[f"{flag.removesuffix('-region')}-region-count"] += 1
        for kind, value in counts.items():
            put("pd_regions_status", value, type=kind, **base)
        for store in cluster.stores.values():
            if store.state == STATE_TOMBSTONE:
                continue
            st = stats[store.id]
            labels = {"address": store.address, "store": str(store.id), **base}
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
                put("pd_scheduler_store_status", value, type=kind, **labels)
    return out


_REGION_STATUS_TYPES = (
    "miss-peer",
    "extra-peer",
    "down-peer",
    "pending-peer",
    "offline-peer",
    "learner-peer",
    "empty",
    "oversized",
    "undersized",
)


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
