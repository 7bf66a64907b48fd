"""Operational endpoints: liveness, readiness (Redis within the deadline), Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from redis.exceptions import RedisError

from ratelimiter_service.api.deps import node_of
from ratelimiter_service.api.models import Health, Readiness
from ratelimiter_service.redis_client import within_deadline

router = APIRouter(tags=["operations"])


@router.get("/health", response_model=Health, summary="The process is alive")
async def health(request: Request) -> Health:
    return Health(status="ok", node_id=node_of(request).node_id)


@router.get(
    "/ready",
    response_model=Readiness,
    summary="Redis answers within the deadline",
    responses={503: {"model": Readiness, "description": "Redis did not answer within the deadline"}},
)
async def ready(request: Request) -> JSONResponse:
    node = node_of(request)
    try:
        await within_deadline(node.client.ping(), node.settings.deadline_s)
    except RedisError as exc:
        node.redis_error("ready", exc)
        body = Readiness(ready=False, node_id=node.node_id, policy_version=node.policies.version, reason=str(exc))
        return JSONResponse(body.model_dump(), status_code=503)
    body = Readiness(ready=True, node_id=node.node_id, policy_version=node.policies.version)
    return JSONResponse(body.model_dump())


@router.get(
    "/metrics",
    summary="Prometheus metrics of this node (all its worker processes)",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
)
async def metrics(request: Request) -> Response:
    return Response(node_of(request).metrics.render(), media_type=CONTENT_TYPE_LATEST)
