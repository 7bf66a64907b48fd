"""Fault injection for the lab, under `/sim/...` (not part of PD's API).

    POST /sim/chaos/store_down        {"store_id": 3}     stop the TiKV process (heartbeats, raft, gRPC)
    POST /sim/chaos/store_up          {"store_id": 3}     restart it
    POST /sim/chaos/disk_full         {"store_id": 3, "available_bytes": N | "available_ratio": 0.05}
    POST /sim/chaos/disk_ok           {"store_id": 3}     clear the disk_full override
    POST /sim/chaos/hot_store         {"store_id": 1, "latency_ms": 300, "slow_score": 90?}  (0 clears)
    POST /sim/chaos/leader_imbalance  {"store_id": 1}     move every leader it can onto the store
    POST /sim/pd/{name}/down | /up                        take a PD member away / back
    POST /sim/tick                                        run one scheduling round now
    GET  /sim/state                                       a summary of the model
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .model import Cluster, PDError


def _reply(payload: Any, status: int = 200) -> Response:
    return Response(json.dumps(payload, indent=2).encode() + b"\n", status_code=status, headers={"Content-Type": "application/json"})


class ChaosInputError(Exception):
    pass


def _number(body: dict[str, Any], key: str, *, required: bool = True) -> float | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ChaosInputError(f"field {key!r} must be a number")
    return float(value)


def state_summary(cluster: Cluster) -> dict[str, Any]:
    stats = cluster.store_stats()
    return {
        "now": cluster.now(),
        "pd_leader": cluster.pd_leader,
        "members": {m.name: {"down": m.down, "client_url": m.client_url} for m in cluster.members},
        "stores": {
            str(s.id): {
                "state_name": cluster.state_name(s),
                "alive": s.alive,
                "leader_count": stats[s.id].leader_count,
                "region_count": stats[s.id].region_count,
                "leader_weight": s.leader_weight,
                "available": s.available,
                "capacity": s.capacity,
                "extra_latency_ms": s.extra_latency * 1000,
                "slow_score": s.slow_score,
            }
            for s in sorted(cluster.stores.values(), key=lambda s: s.id)
        },
        "schedulers": list(cluster.schedulers),
        "evict_leader_stores": list(cluster.evict_leader_stores),
        "operators": len(cluster.operators),
        "max_store_down_time": cluster.schedule_config["max-store-down-time"],
        "disconnect_after": cluster.settings.disconnect_after,
    }


def sim_routes(cluster: Cluster) -> list[BaseRoute]:
    async def body_of(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except ValueError:
            raise ChaosInputError("the request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise ChaosInputError("the request body must be a JSON object")
        return body

    async def chaos(request: Request) -> Response:
        action = request.path_params["action"]
        try:
            body = await body_of(request)
            store_id = int(_number(body, "store_id") or 0)
            if action == "store_down":
                cluster.stop_store(store_id)
            elif action == "store_up":
                cluster.start_store(store_id)
            elif action == "disk_full":
                store = cluster.store(store_id)
                ratio = _number(body, "available_ratio", required=False)
                available = ratio * store.capacity if ratio is not None else _number(body, "available_bytes")
                cluster.set_available(store_id, int(available or 0))
            elif action == "disk_ok":
                cluster.set_available(store_id, None)
            elif action == "hot_store":
                latency = (_number(body, "latency_ms") or 0.0) / 1000
                score = _number(body, "slow_score", required=False)
                cluster.set_extra_latency(store_id, latency, int(score) if score is not None else (1 if latency == 0 else None))
            elif action == "leader_imbalance":
                moved = cluster.skew_leaders(store_id)
                return _reply({"ok": True, "moved": moved})
            else:
                return _reply({"error": f"unknown chaos action {action!r}"}, 404)
        except ChaosInputError as exc:
            return _reply({"error": str(exc)}, 400)
        except PDError as exc:
            return _reply({"error": exc.message}, exc.status)
        return _reply({"ok": True})

    async def pd_member(request: Request) -> Response:
        name, verb = request.path_params["name"], request.path_params["verb"]
        if verb not in ("down", "up"):
            return _reply({"error": f"unknown verb {verb!r}; use down or up"}, 404)
        try:
            cluster.set_member_down(name, verb == "down")
        except KeyError:
            return _reply({"error": f"no PD member named {name!r}"}, 404)
        return _reply({"ok": True, "pd_leader": cluster.pd_leader})

    async def do_tick(request: Request) -> Response:
        cluster.tick()
        return _reply({"ok": True, "now": cluster.now()})

    async def state(request: Request) -> Response:
        return _reply(state_summary(cluster))

    return [
        Route("/sim/chaos/{action}", chaos, methods=["POST"]),
        Route("/sim/pd/{name}/{verb}", pd_member, methods=["POST"]),
        Route("/sim/tick", do_tick, methods=["POST"]),
        Route("/sim/state", state, methods=["GET"]),
    ]
