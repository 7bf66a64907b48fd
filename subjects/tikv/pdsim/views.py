"""PD's JSON shapes built from the model, field order and omitempty rules as PD emits them."""

from __future__ import annotations

from typing import Any

from .constants import ROLE_LEARNER, ROLE_NAMES
from .formats import bytes_size, go_duration_ns, rfc3339_nano
from .model import Cluster, PdMember, Peer, Region, Store, StoreStats

PD_VERSION = "v8.5.0"
PD_GIT_HASH = "fca469ca33eb5d8b5e0891b507c87709a00b0e81"


def store_info(cluster: Cluster, store: Store, stats: StoreStats) -> dict[str, Any]:
    meta: dict[str, Any] = {"id": store.id, "address": store.address}
    if store.state:
        meta["state"] = store.state
    if store.labels:
        meta["labels"] = [{"key": k, "value": v} for k, v in store.labels.items()]
    meta.update(
        {
            "version": store.version,
            "peer_address": store.address,
            "status_address": store.status_address,
            "git_hash": store.git_hash,
            "start_timestamp": store.start_timestamp,
            "deploy_path": "/",
            "last_heartbeat": store.last_heartbeat_ns,
        }
    )
    if store.physically_destroyed:
        meta["physically_destroyed"] = True
    if store.node_state:
        meta["node_state"] = store.node_state
    meta["state_name"] = cluster.state_name(store)

    status: dict[str, Any] = {
        "capacity": bytes_size(store.capacity),
        "available": bytes_size(store.available),
        "used_size": bytes_size(store.used),
        "leader_count": stats.leader_count,
        "leader_weight": float(store.leader_weight),
        "leader_score": cluster.leader_score(store, stats),
        "leader_size": stats.leader_size,
        "region_count": stats.region_count,
        "region_weight": float(store.region_weight),
        "region_score": cluster.region_score(store, stats),
        "region_size": stats.region_size,
    }
    if stats.learner_count:
        status["learner_count"] = stats.learner_count
    if stats.pending_peer_count:
        status["pending_peer_count"] = stats.pending_peer_count
    if store.slow_score:
        status["slow_score"] = store.slow_score
    start_ns = store.start_timestamp * 1_000_000_000
    status["start_ts"] = rfc3339_nano(start_ns)
    status["last_heartbeat_ts"] = rfc3339_nano(store.last_heartbeat_ns)
    if store.last_heartbeat_ns - start_ns > 0:
        status["uptime"] = go_duration_ns(store.last_heartbeat_ns - start_ns)
    return {"store": meta, "status": status}


def stores_info(cluster: Cluster, stores: list[Store]) -> dict[str, Any]:
    stats = cluster.store_stats()
    return {"count": len(stores), "stores": [store_info(cluster, s, stats[s.id]) for s in stores]}


def peer_info(peer: Peer) -> dict[str, Any]:
    out: dict[str, Any] = {"role_name": ROLE_NAMES[peer.role]}
    if peer.role == ROLE_LEARNER:
        out["is_learner"] = True
    out["id"] = peer.id
    out["store_id"] = peer.store_id
    if peer.role:
        out["role"] = peer.role
    return out


def region_info(region: Region) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": region.id,
        "start_key": region.start_key,
        "end_key": region.end_key,
        "epoch": {"conf_ver": region.conf_ver, "version": region.version},
    }
    if region.peers:
        out["peers"] = [peer_info(p) for p in region.peers]
    out["leader"] = peer_info(region.leader)
    by_id = {p.id: p for p in region.peers}
    if region.down_peers:
        out["down_peers"] = [
            {"peer": peer_info(by_id[pid]), "down_seconds": secs}
            for pid, secs in sorted(region.down_peers.items())
            if pid in by_id
        ]
    if region.pending_peer_ids:
        out["pending_peers"] = [peer_info(by_id[pid]) for pid in sorted(region.pending_peer_ids) if pid in by_id]
    out.update(
        {
            "cpu_usage": 0,
            "written_bytes": 0,
            "read_bytes": 0,
            "written_keys": 0,
            "read_keys": 0,
            "approximate_size": region.approximate_size,
            "approximate_keys": region.approximate_keys,
            "approximate_kv_size": max(0, region.approximate_size - 1),
        }
    )
    return out


def missing_region_info() -> dict[str, Any]:
    """PD v8.1-v8.5 render an unknown region id as a zero-valued RegionInfo with 200."""
    return {
        "id": 0,
        "start_key": "",
        "end_key": "",
        "leader": {"role_name": ""},
        "cpu_usage": 0,
        "written_bytes": 0,
        "read_bytes": 0,
        "written_keys": 0,
        "read_keys": 0,
        "approximate_size": 0,
        "approximate_keys": 0,
        "approximate_kv_size": 0,
    }


def regions_info(regions: list[Region]) -> dict[str, Any]:
    return {"count": len(regions), "regions": [region_info(r) for r in regions]}


def member_info(member: PdMember) -> dict[str, Any]:
    return {
        "name": member.name,
        "member_id": member.member_id,
        "peer_urls": [member.peer_url],
        "client_urls": [member.client_url],
        "deploy_path": "/",
        "binary_version": PD_VERSION,
        "git_hash": PD_GIT_HASH,
    }
