"""Management endpoints (bearer token): policies, keys, nodes.

Redis errors here are not decided by a failure mode: they become 503 (app exception handler).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from ratelimiter_service.api.deps import check_enforceable, check_key, invalid, node_of, policy_or_404, require_token
from ratelimiter_service.api.models import (
    POLICY_NAME,
    KeyReset,
    KeysResponse,
    KeyUsageOut,
    NodeOut,
    NodeRemoved,
    NodesResponse,
    PoliciesResponse,
    PolicyOut,
    PolicySpec,
    PolicyWritten,
    Problem,
)
from ratelimiter_service.policies import Policy
from ratelimiter_service.redis_client import repeating_within
from ratelimiter_service.settings import NODE_ID_PATTERN

AUTH_RESPONSES: dict[int | str, dict[str, object]] = {
    401: {"model": Problem, "description": "Missing or wrong bearer token"},
    403: {"model": Problem, "description": "Management disabled: the node has no token"},
    503: {"model": Problem, "description": "Redis did not answer in time"},
}
NOT_FOUND: dict[int | str, dict[str, object]] = {404: {"model": Problem, "description": "Not found"}}

router = APIRouter(dependencies=[Depends(require_token)], responses=AUTH_RESPONSES, tags=["management"])

PolicyName = Annotated[str, Path(pattern=POLICY_NAME, description="Policy name, [A-Za-z0-9_.-]{1,64}")]
NodeId = Annotated[str, Path(pattern=NODE_ID_PATTERN, description="Node id")]


def policy_out(policy: Policy) -> PolicyOut:
    return PolicyOut.model_validate(policy.model_dump())


@router.get("/v1/policies", response_model=PoliciesResponse, summary="Policies this node enforces")
async def list_policies(request: Request) -> PoliciesResponse:
    node = node_of(request)
    return PoliciesResponse(
        version=node.policies.version,
        policies={name: policy_out(policy) for name, policy in sorted(node.policies.all().items())},
    )


@router.put("/v1/policies/{name}", response_model=PolicyWritten, summary="Create or replace a policy")
async def put_policy(spec: PolicySpec, request: Request, name: PolicyName) -> PolicyWritten:
    node = node_of(request)
    try:
        policy = Policy(name=name, **spec.model_dump())
    except ValidationError as exc:
        raise invalid(("body",), "; ".join(str(e["msg"]) for e in exc.errors())) from None
    for key in policy.overrides:
        check_key(key, max_bytes=node.settings.max_key_bytes, loc=("body", "overrides", key))
    check_enforceable(node, policy, ("body", "limit"))
    version = await repeating_within(lambda: node.policies.put(policy), node.management_timeout_s)
    return PolicyWritten(version=version, policy=policy_out(policy))


@router.delete(
    "/v1/policies/{name}",
    response_model=PolicyWritten,
    summary="Delete a policy",
    responses={**NOT_FOUND, 409: {"model": Problem, "description": "The built-in default policy"}},
)
async def delete_policy(request: Request, name: PolicyName) -> PolicyWritten:
    node = node_of(request)
    if name == "default":
        raise HTTPException(status_code=409, detail="the 'default' policy is built in and cannot be deleted")
    policy_or_404(node, name)
    version = await repeating_within(lambda: node.policies.delete(name), node.management_timeout_s)
    return PolicyWritten(version=version)


@router.post("/v1/policies/reload", response_model=PolicyWritten, summary="Refresh this node's policy cache now")
async def reload_policies(request: Request) -> PolicyWritten:
    """Works even when the periodic refresh is frozen (test mode): the operator's fix for drift."""
    node = node_of(request)
    return PolicyWritten(version=await node.refresh_policies())


@router.get("/v1/keys", response_model=KeysResponse, summary="Active keys with their usage")
async def list_keys(
    request: Request,
    over_limit: bool = Query(default=False, description="Only keys with nothing remaining"),
    limit: int = Query(default=1000, ge=1, le=10_000, description="At most this many keys"),
) -> JSONResponse:
    node = node_of(request)
    usages = await repeating_within(
        lambda: node.limiter.active_keys(node.known_policies(), over_limit=over_limit, limit=limit),
        node.management_timeout_s,
    )
    # Plain dicts: the usages are already typed, and a listing may hold 10,000 of them.
    return JSONResponse({"keys": [vars(usage) for usage in usages]})


@router.get(
    "/v1/keys/{policy}/{key:path}", response_model=KeyUsageOut, summary="Usage of one key", responses=NOT_FOUND
)
async def get_key(request: Request, key: str, policy: PolicyName) -> KeyUsageOut:
    node = node_of(request)
    found = policy_or_404(node, policy)
    check_key(key, max_bytes=node.settings.max_key_bytes, loc=("path", "key"))
    usage = await repeating_within(lambda: node.limiter.usage(found, key), node.management_timeout_s)
    return KeyUsageOut(**vars(usage))


@router.delete(
    "/v1/keys/{policy}/{key:path}", response_model=KeyReset, summary="Reset one key's usage", responses=NOT_FOUND
)
async def reset_key(request: Request, key: str, policy: PolicyName) -> KeyReset:
    node = node_of(request)
    found = policy_or_404(node, policy)
    check_key(key, max_bytes=node.settings.max_key_bytes, loc=("path", "key"))
    reset = await repeating_within(lambda: node.limiter.reset(found, key), node.management_timeout_s)
    return KeyReset(policy=policy, key=key, reset=reset)


@router.get("/v1/nodes", response_model=NodesResponse, summary="Nodes and their states from heartbeats")
async def list_nodes(request: Request) -> NodesResponse:
    node = node_of(request)
    return NodesResponse(nodes=[NodeOut(**vars(status)) for status in await node.registry.nodes()])


@router.delete("/v1/nodes/{node_id}", response_model=NodeRemoved, summary="Deregister a node", responses=NOT_FOUND)
async def remove_node(request: Request, node_id: NodeId) -> NodeRemoved:
    """A node removed while alive registers again with its next heartbeat."""
    node = node_of(request)
    if not await node.registry.remove(node_id):
        raise HTTPException(status_code=404, detail=f"no node {node_id!r} in the registry")
    return NodeRemoved(id=node_id, removed=True)
