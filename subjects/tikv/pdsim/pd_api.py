"""PD's HTTP API (`/pd/api/v1/...`) over the cluster model, byte-compatible where it matters.

Most handlers render like unrolled/render with IndentJSON (pretty JSON, `application/json;
charset=UTF-8`, trailing newline); region listings are easyjson bytes sent with
`application/octet-stream`. Errors are JSON strings with PD's `[PD:...]` codes.
"""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from . import views
from .constants import ROLE_LEARNER
from .exposition import metrics_response, pd_metrics
from .formats import compact_json, go_duration_ns, indent_json, parse_go_duration_ns, rfc3339_nano
from .model import EVICT_LEADER, GRANT_LEADER, REGION_CHECKS, Cluster, PDError

JSON_TYPE = "application/json; charset=UTF-8"
PREFIX = "/pd/api/v1"
Handler = Callable[[Request], Awaitable[Response]]


def pretty(value: Any, status: int = 200) -> Response:
    return Response(indent_json(value), status_code=status, headers={"Content-Type": JSON_TYPE})


def compact(value: Any) -> Response:
    return Response(compact_json(value), headers={"Content-Type": "application/octet-stream"})


def input_error(message: str) -> Response:
    """apiutil.ErrorResp with an errcode InvalidInput error."""
    response = pretty({"code": "input", "msg": message, "data": {}}, status=400)
    response.headers["TiDB-Error-Code"] = "input"
    return response


class InputError(Exception):
    pass


def _uint(text: str) -> int:
    if not text.isdigit():
        raise InputError(f'strconv.ParseUint: parsing "{text}": invalid syntax')
    value = int(text)
    if value >= 2**64:
        raise InputError(f'strconv.ParseUint: parsing "{text}": value out of range')
    return value


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise PDError(400, f"invalid character in JSON body: {exc.msg}") from None


def _wrap(cluster: Cluster, fn: Callable[[Request, Cluster], Awaitable[Response]]) -> Handler:
    async def handler(request: Request) -> Response:
        try:
            return await fn(request, cluster)
        except PDError as exc:
            return pretty(exc.message, exc.status)
        except InputError as exc:
            return input_error(str(exc))

    return handler


# --- stores ---------------------------------------------------------------------------


async def get_stores(request: Request, cluster: Cluster) -> Response:
    wanted: set[int] = set()
    for raw in request.query_params.getlist("state"):
        try:
            wanted.add(int(raw))
        except ValueError:
            return pretty(f'strconv.Atoi: parsing "{raw}": invalid syntax', 500)
    if not wanted:
        wanted = {0, 1}
    stores = [s for s in sorted(cluster.stores.values(), key=lambda s: s.id) if s.state in wanted]
    return pretty(views.stores_info(cluster, stores))


async def check_stores(request: Request, cluster: Cluster) -> Response:
    names = {"up", "offline", "tombstone", "down", "disconnected"}
    wanted = set()
    for raw in request.query_params.getlist("state"):
        if raw.lower() not in names:
            return pretty(f"unknown StoreState: {raw}", 400)
        wanted.add(raw.lower())
    stores = [
        s
        for s in sorted(cluster.stores.values(), key=lambda s: s.id)
        if not wanted or cluster.state_name(s).lower() in wanted
    ]
    return pretty(views.stores_info(cluster, stores))


async def get_store(request: Request, cluster: Cluster) -> Response:
    store = cluster.store(_uint(request.path_params["id"]))
    return pretty(views.store_info(cluster, store, cluster.store_stats()[store.id]))


async def delete_store(request: Request, cluster: Cluster) -> Response:
    store_id = _uint(request.path_params["id"])
    force = request.query_params.get("force", "").lower() == "true"
    cluster.delete_store(store_id, force=force)
    return pretty("The store is set as Offline.")


async def set_store_state(request: Request, cluster: Cluster) -> Response:
    store_id = _uint(request.path_params["id"])
    cluster.store(store_id)
    cluster.set_store_state(store_id, request.query_params.get("state", ""))
    return pretty("The store's state is updated.")


async def set_store_weight(request: Request, cluster: Cluster) -> Response:
    store_id = _uint(request.path_params["id"])
    body = await _json_body(request)
    if not isinstance(body, dict):
        return pretty("json: cannot unmarshal into Go value of type map[string]interface {}", 400)
    weights = []
    for key in ("leader", "region"):
        if key not in body:
            return pretty(f"{key} weight unset", 400)
        value = body[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            return pretty(f"bad format {key} weight", 400)
        weights.append(float(value))
    cluster.set_store_weight(store_id, weights[0], weights[1])
    return pretty("The store's weight is updated.")


# --- regions --------------------------------------------------------------------------


def _sorted_regions(cluster: Cluster) -> list:
    return sorted(cluster.regions.values(), key=lambda r: r.start_key or "")


async def get_regions(request: Request, cluster: Cluster) -> Response:
    return compact(views.regions_info(_sorted_regions(cluster)))


async def count_regions(request: Request, cluster: Cluster) -> Response:
    return pretty({"count": len(cluster.regions), "regions": None})


async def store_regions(request: Request, cluster: Cluster) -> Response:
    store_id = _uint(request.path_params["id"])
    kind = request.query_params.get("type", "all")
    if kind not in ("all", "leader", "follower", "learner"):
        return pretty(f"unknown type {kind}", 400)
    picked = []
    for region in _sorted_regions(cluster):
        peer = region.peer_on(store_id)
        if peer is None:
            continue
        is_leader = region.leader_peer_id == peer.id
        if (
            kind == "all"
            or (kind == "leader" and is_leader)
            or (kind == "follower" and not is_leader and peer.role != ROLE_LEARNER)
            or (kind == "learner" and peer.role == ROLE_LEARNER)
        ):
            picked.append(region)
    return compact(views.regions_info(picked))


async def get_region(request: Request, cluster: Cluster) -> Response:
    region = cluster.regions.get(_uint(request.path_params["id"]))
    return compact(views.region_info(region) if region else views.missing_region_info())


async def check_regions(request: Request, cluster: Cluster) -> Response:
    kind = request.path_params["kind"]
    if kind not in REGION_CHECKS:
        return PlainTextResponse("404 page not found\n", status_code=404)
    picked = [r for r in _sorted_regions(cluster) if kind in cluster.region_flags(r)]
    return compact(views.regions_info(picked))


# --- schedulers -----------------------------------------------------------------------


async def list_schedulers(request: Request, cluster: Cluster) -> Response:
    if request.query_params.get("status") == "paused":
        paused = [name for name in cluster.schedulers if not cluster.scheduler_active(name)]
        return pretty(paused or None)
    if request.query_params.get("status") == "disabled":
        return pretty(None)
    return pretty(list(cluster.schedulers))


async def create_scheduler(request: Request, cluster: Cluster) -> Response:
    body = await _json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("name"), str):
        return pretty("missing scheduler name", 400)
    name = body["name"]
    store_id = None
    if name in (EVICT_LEADER, GRANT_LEADER):
        if "store_id" not in body:
            return pretty("missing store id", 400)
        raw = body["store_id"]
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or raw < 0:
            return pretty("please input a right store id", 400)
        store_id = int(raw)
    return pretty(cluster.add_scheduler(name, store_id))


async def delete_scheduler(request: Request, cluster: Cluster) -> Response:
    return pretty(cluster.remove_scheduler(request.path_params["name"]))


async def pause_scheduler(request: Request, cluster: Cluster) -> Response:
    body = await _json_body(request)
    if not isinstance(body, dict) or "delay" not in body:
        return pretty("missing pause time", 400)
    delay = body["delay"]
    if isinstance(delay, bool) or not isinstance(delay, int):
        return pretty("json: cannot unmarshal into Go value of type int", 400)
    cluster.pause_scheduler(request.path_params["name"], delay)
    return pretty("Pause or resume the scheduler successfully.")


async def evict_leader_list(request: Request, cluster: Cluster) -> Response:
    if EVICT_LEADER not in cluster.schedulers:
        return pretty("[PD:scheduler:ErrSchedulerNotFound]scheduler not found", 404)
    ranges = {str(sid): [{"start-key": "", "end-key": ""}] for sid in cluster.evict_leader_stores}
    return pretty({"store-id-ranges": ranges, "batch": cluster.evict_leader_batch})


async def evict_leader_delete(request: Request, cluster: Cluster) -> Response:
    store_id = _uint(request.path_params["id"])
    if EVICT_LEADER not in cluster.schedulers or store_id not in cluster.evict_leader_stores:
        return pretty("[PD:scheduler:ErrSchedulerNotFound]scheduler not found", 404)
    cluster.remove_scheduler(f"{EVICT_LEADER}-{store_id}")
    return pretty(None if cluster.evict_leader_stores else "The last store has been deleted")


# --- operators ------------------------------------------------------------------------


async def list_operators(request: Request, cluster: Cluster) -> Response:
    kind = request.query_params.get("kind")
    ops = [op.describe() for _, op in sorted(cluster.operators.items())]
    if kind is not None:
        matching = ops if kind in ("admin", "leader") else []
        return pretty(matching or None)
    return pretty(ops)


def _id_field(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value)


async def create_operator(request: Request, cluster: Cluster) -> Response:
    body = await _json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("name"), str):
        return pretty("missing operator name", 400)
    name = body["name"]
    if name == "transfer-leader":
        region_id = _id_field(body, "region_id")
        if region_id is None:
            return pretty("missing region id", 400)
        to_store = _id_field(body, "to_store_id")
        if to_store is None:
            return pretty("missing store id to transfer leader to", 400)
        cluster.add_transfer_leader(region_id, to_store)
        return pretty("The operator is created.")
    known = {
        "transfer-region",
        "transfer-peer",
        "add-peer",
        "add-learner",
        "remove-peer",
        "merge-region",
        "split-region",
        "scatter-region",
        "scatter-regions",
    }
    if name in known:
        return pretty(f"pdsim does not simulate the {name} operator; only transfer-leader", 501)
    return pretty("unknown operator", 400)


async def get_operator(request: Request, cluster: Cluster) -> Response:
    return pretty(cluster.operator_status(_uint(request.path_params["region_id"])))


async def cancel_operator(request: Request, cluster: Cluster) -> Response:
    region_id = _uint(request.path_params["region_id"])
    op = cluster.operators.pop(region_id, None)
    if op is None:
        return pretty("operator not found", 500)
    op.status = "CANCEL"
    op.finished_at = cluster.now()
    cluster.operator_records[region_id] = op
    return pretty("The pending operator is canceled.")


# --- cluster, members, config ---------------------------------------------------------


async def ping(request: Request, cluster: Cluster) -> Response:
    return Response(b"", status_code=200)


async def version(request: Request, cluster: Cluster) -> Response:
    return pretty({"version": views.PD_VERSION})


async def status(request: Request, cluster: Cluster) -> Response:
    return pretty(
        {
            "build_ts": "2024-12-18 02:24:55",
            "version": views.PD_VERSION,
            "git_hash": views.PD_GIT_HASH,
            "start_timestamp": int(cluster.bootstrap_ns // 1_000_000_000),
        }
    )


async def health(request: Request, cluster: Cluster) -> Response:
    return pretty(
        [
            {"name": m.name, "member_id": m.member_id, "client_urls": [m.client_url], "health": not m.down}
            for m in cluster.members
        ]
    )


async def members(request: Request, cluster: Cluster) -> Response:
    leader = views.member_info(cluster.member(cluster.pd_leader)) if cluster.pd_leader else None
    return pretty(
        {
            "header": {"cluster_id": cluster.cluster_id},
            "members": [views.member_info(m) for m in cluster.members],
            "leader": leader,
            "etcd_leader": leader,
        }
    )


async def leader(request: Request, cluster: Cluster) -> Response:
    return pretty(views.member_info(cluster.member(cluster.pd_leader)) if cluster.pd_leader else None)


async def cluster_meta(request: Request, cluster: Cluster) -> Response:
    return pretty({"id": cluster.cluster_id, "max_peer_count": cluster.desired_replicas()})


async def cluster_status(request: Request, cluster: Cluster) -> Response:
    return pretty(
        {
            "raft_bootstrap_time": rfc3339_nano(cluster.bootstrap_ns),
            "is_initialized": True,
            "replication_status": "majority",
        }
    )


def _apply_config(target: dict[str, Any], body: dict[str, Any], *, strict: bool) -> str | None:
    """Validate then apply; returns an error message or None. Non-strict ignores unknown keys."""
    staged: dict[str, Any] = {}
    for key, value in body.items():
        if key not in target:
            if strict:
                return f"config item {key} not found"
            continue
        current = target[key]
        if isinstance(current, str) and current in ("true", "false"):
            ok = value in ("true", "false")
        elif key.endswith(("-time", "-interval")):
            if not isinstance(value, str):
                return f"json: cannot unmarshal {type(value).__name__} into Go struct field of {key}"
            try:
                # PD stores a typeutil.Duration and renders it back as Duration.String().
                value = go_duration_ns(parse_go_duration_ns(value))
            except ValueError as exc:
                return str(exc)
            ok = True
        elif isinstance(current, bool) or isinstance(current, (list, type(None))):
            ok = True
        elif isinstance(current, int):
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        elif isinstance(current, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            value = float(value) if ok else value
        else:
            ok = isinstance(value, str)
        if not ok:
            return f"json: cannot unmarshal {type(value).__name__} into Go struct field of {key}"
        staged[key] = value
    if "max-replicas" in staged and staged["max-replicas"] < 1:
        return "max-replicas should be greater than 0"
    target.update(staged)
    return None


async def get_replicate(request: Request, cluster: Cluster) -> Response:
    return pretty(cluster.replication_config)


async def set_replicate(request: Request, cluster: Cluster) -> Response:
    body = await _json_body(request)
    if not isinstance(body, dict):
        return pretty("json: cannot unmarshal into config", 400)
    error = _apply_config(cluster.replication_config, body, strict=False)
    return pretty(error, 400) if error else pretty("The config is updated.")


async def get_schedule(request: Request, cluster: Cluster) -> Response:
    return pretty(cluster.schedule_config)


async def set_schedule(request: Request, cluster: Cluster) -> Response:
    body = await _json_body(request)
    if not isinstance(body, dict):
        return pretty("json: cannot unmarshal into config", 400)
    error = _apply_config(cluster.schedule_config, body, strict=False)
    return pretty(error, 400) if error else pretty("The config is updated.")


async def get_config(request: Request, cluster: Cluster) -> Response:
    return pretty({"schedule": cluster.schedule_config, "replication": cluster.replication_config})


async def set_config(request: Request, cluster: Cluster) -> Response:
    body = await _json_body(request)
    if not isinstance(body, dict):
        return pretty("json: cannot unmarshal into config", 400)
    schedule = {k: v for k, v in body.items() if k in cluster.schedule_config}
    replication = {k: v for k, v in body.items() if k in cluster.replication_config}
    unknown = [k for k in body if k not in schedule and k not in replication]
    if unknown:
        return pretty(f"config item {unknown[0]} not found", 400)
    error = _apply_config(cluster.schedule_config, schedule, strict=True) or _apply_config(
        cluster.replication_config, replication, strict=True
    )
    return pretty(error, 400) if error else pretty("The config is updated.")


_ROUTES: tuple[tuple[str, Callable[[Request, Cluster], Awaitable[Response]], tuple[str, ...]], ...] = (
    ("/ping", ping, ("GET",)),
    ("/version", version, ("GET",)),
    ("/status", status, ("GET",)),
    ("/health", health, ("GET",)),
    ("/members", members, ("GET",)),
    ("/leader", leader, ("GET",)),
    ("/cluster", cluster_meta, ("GET",)),
    ("/cluster/status", cluster_status, ("GET",)),
    ("/stores", get_stores, ("GET",)),
    ("/stores/check", check_stores, ("GET",)),
    ("/store/{id}", get_store, ("GET",)),
    ("/store/{id}", delete_store, ("DELETE",)),
    ("/store/{id}/state", set_store_state, ("POST",)),
    ("/store/{id}/weight", set_store_weight, ("POST",)),
    ("/regions", get_regions, ("GET",)),
    ("/regions/count", count_regions, ("GET",)),
    ("/regions/store/{id}", store_regions, ("GET",)),
    ("/regions/check/{kind}", check_regions, ("GET",)),
    ("/region/id/{id}", get_region, ("GET",)),
    ("/schedulers", list_schedulers, ("GET",)),
    ("/schedulers", create_scheduler, ("POST",)),
    ("/schedulers/{name}", delete_scheduler, ("DELETE",)),
    ("/schedulers/{name}", pause_scheduler, ("POST",)),
    ("/scheduler-config/evict-leader-scheduler/list", evict_leader_list, ("GET",)),
    ("/scheduler-config/evict-leader-scheduler/delete/{id}", evict_leader_delete, ("DELETE",)),
    ("/operators", list_operators, ("GET",)),
    ("/operators", create_operator, ("POST",)),
    ("/operators/{region_id}", get_operator, ("GET",)),
    ("/operators/{region_id}", cancel_operator, ("DELETE",)),
    ("/config", get_config, ("GET",)),
    ("/config", set_config, ("POST",)),
    ("/config/replicate", get_replicate, ("GET",)),
    ("/config/replicate", set_replicate, ("POST",)),
    ("/config/schedule", get_schedule, ("GET",)),
    ("/config/schedule", set_schedule, ("POST",)),
)

# Served by the member itself even without a PD leader.
_LOCAL_PATHS = {PREFIX + "/ping", PREFIX + "/version", PREFIX + "/status"}


class _Availability:
    """A down member answers 503 (the process closes its listener too); without etcd quorum the
    live members cannot redirect to a leader and answer 503 as well."""

    def __init__(self, app: ASGIApp, cluster: Cluster, member: str) -> None:
        self.app = app
        self.cluster = cluster
        self.member = member

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and path.startswith(PREFIX):
            if self.cluster.member(self.member).down:
                await PlainTextResponse("pd member is down\n", status_code=503)(scope, receive, send)
                return
            if self.cluster.pd_leader is None and path not in _LOCAL_PATHS:
                body = "[PD:apiutil:ErrRedirectNoLeader]redirect finds no leader\n"
                await PlainTextResponse(body, status_code=503)(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _not_found(request: Request, exc: Exception) -> Response:
    return PlainTextResponse("404 page not found\n", status_code=404)


async def _not_allowed(request: Request, exc: Exception) -> Response:
    return Response(b"", status_code=405)


def pd_routes(cluster: Cluster) -> list[BaseRoute]:
    return [Route(PREFIX + path, _wrap(cluster, fn), methods=list(methods)) for path, fn, methods in _ROUTES]


def create_pd_app(cluster: Cluster, member: str, extra_routes: list[BaseRoute] | None = None) -> ASGIApp:
    """The HTTP front-end of PD member `member` (e.g. "pd1") over the shared cluster, with its
    `/metrics` on the same (client) port as PD serves them."""
    cluster.member(member)

    async def metrics(request: Request) -> Response:
        return metrics_response(pd_metrics(cluster, cluster.member(member)))

    app = Starlette(
        routes=pd_routes(cluster) + [Route("/metrics", metrics, methods=["GET"])] + list(extra_routes or []),
        exception_handlers={404: _not_found, 405: _not_allowed},
    )
    return _Availability(app, cluster, member)

