"""`POST /v1/check` and `POST /v1/check/batch`: the hot path."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ratelimiter_service.api.decisions import (
    BatchItemError,
    Outcome,
    decide_all,
    decide_many,
    decide_one,
    peek_one,
)
from ratelimiter_service.api.deps import (
    check_cost_fits,
    check_enforceable,
    check_key,
    invalid,
    node_of,
    policy_or_404,
)
from ratelimiter_service.api.problems import problem_body
from ratelimiter_service.api.models import (
    BatchRequest,
    BatchResponse,
    CheckRequest,
    CheckResult,
    LimitSpec,
    MultiCheckResult,
    Problem,
)
from ratelimiter_service.headers import decision_headers

if TYPE_CHECKING:
    from ratelimiter_service.app import Node

router = APIRouter(tags=["decisions"])

DECISION_HEADERS = {
    "RateLimit-Policy": {"description": 'IETF draft-11, e.g. `"default";q=100;w=60`', "schema": {"type": "string"}},
    "RateLimit": {"description": 'IETF draft-11, e.g. `"default";r=42;t=17`', "schema": {"type": "string"}},
    "X-RateLimit-Limit": {"schema": {"type": "integer"}},
    "X-RateLimit-Remaining": {"schema": {"type": "integer"}},
    "X-RateLimit-Reset": {"description": "Seconds until the quota is restored.", "schema": {"type": "integer"}},
    "X-RateLimit-Failure-Mode": {
        "description": "open|closed when Redis did not take part in the decision.",
        "schema": {"type": "string"},
    },
}


def result_body(outcome: Outcome, version: int) -> dict[str, Any]:
    return {
        "allowed": outcome.allowed,
        "limit": outcome.limit,
        "remaining": None if outcome.remaining is None else max(0, outcome.remaining),
        "reset_after_ms": outcome.reset_after_ms,
        "retry_after_ms": outcome.retry_after_ms,
        "policy": outcome.policy.name,
        "policy_version": version,
        "failure_mode": outcome.failure_mode,
        "shadow_denied": outcome.shadow_denied,
    }


@router.post(
    "/v1/check",
    response_model=CheckResult | MultiCheckResult,
    summary="Decide one request",
    responses={
        200: {"description": "Allowed", "headers": DECISION_HEADERS},
        429: {
            "model": CheckResult,
            "description": "Denied",
            "headers": {**DECISION_HEADERS, "Retry-After": {"schema": {"type": "integer"}}},
        },
        404: {"model": Problem, "description": "Unknown policy"},
        422: {"model": Problem, "description": "Invalid input, or a cost that can never fit the limit"},
    },
)
async def check(body: CheckRequest, request: Request) -> JSONResponse:
    started = time.perf_counter()
    node = node_of(request)
    if body.now_ms is not None and not node.settings.test_mode:
        raise invalid(("body", "now_ms"), "now_ms is accepted only when RATELIMITER_TEST_MODE is on")
    if body.limits is not None:
        response = await check_limits(node, body.limits, body.now_ms)
    else:
        response = await check_one(node, body)
    node.metrics.check_latency.labels("check").observe(time.perf_counter() - started)
    return response


async def check_one(node: Node, body: CheckRequest) -> JSONResponse:
    assert body.key is not None
    policy = policy_or_404(node, body.policy)
    check_key(body.key, max_bytes=node.settings.max_key_bytes, loc=("body", "key"))
    check_enforceable(node, policy, ("body", "policy"))
    check_cost_fits(policy, body.key, body.cost, ("body", "cost"))
    try:
        if body.cost == 0:
            outcome = await peek_one(node, policy, body.key, body.now_ms)
        else:
            outcome = await decide_one(node, policy, body.key, body.cost, body.now_ms)
    except ValueError as exc:
        raise invalid(("body",), str(exc)) from None
    headers = decision_headers(
        policy=policy.name,
        limit=outcome.limit,
        window_ms=policy.window_ms,
        allowed=outcome.allowed,
        remaining=outcome.remaining,
        reset_after_ms=outcome.reset_after_ms,
        retry_after_ms=outcome.retry_after_ms,
        failure_mode=outcome.failure_mode,
    )
    status = 200 if outcome.allowed or body.cost == 0 else 429
    return JSONResponse(result_body(outcome, node.policies.version), status_code=status, headers=headers)


async def check_limits(node: Node, limits: list[LimitSpec], now_ms: int | None) -> JSONResponse:
    prepared = []
    for index, item in enumerate(limits):
        loc = ("body", "limits", index)
        policy = policy_or_404(node, item.policy)
        check_key(item.key, max_bytes=node.settings.max_key_bytes, loc=(*loc, "key"))
        if item.cost == 0:
            raise invalid((*loc, "cost"), "a peek (cost 0) is a single check, not one of several limits")
        check_enforceable(node, policy, (*loc, "policy"))
        check_cost_fits(policy, item.key, item.cost, (*loc, "cost"))
        prepared.append((policy, item.key, item.cost))
    try:
        decided = await decide_all(node, prepared, now_ms)
    except ValueError as exc:
        raise invalid(("body", "limits"), str(exc)) from None
    binding = decided.outcomes[decided.binding]
    headers = decision_headers(
        policy=binding.policy.name,
        limit=binding.limit,
        window_ms=binding.policy.window_ms,
        allowed=decided.allowed,
        remaining=binding.remaining,
        reset_after_ms=binding.reset_after_ms,
        retry_after_ms=decided.retry_after_ms,
        failure_mode=decided.failure_mode,
    )
    body = {
        "allowed": decided.allowed,
        "limits": [
            {"key": key, **_limit_fields(outcome)} for (_, key, _), outcome in zip(prepared, decided.outcomes)
        ],
        "binding": decided.binding,
        "retry_after_ms": decided.retry_after_ms,
        "policy_version": node.policies.version,
        "failure_mode": decided.failure_mode,
    }
    return JSONResponse(body, status_code=200 if decided.allowed else 429, headers=headers)


def _limit_fields(outcome: Outcome) -> dict[str, Any]:
    fields = result_body(outcome, 0)
    return {name: fields[name] for name in (
        "policy", "allowed", "limit", "remaining", "reset_after_ms", "retry_after_ms", "shadow_denied"
    )}


@router.post(
    "/v1/check/batch",
    response_model=BatchResponse,
    summary="Decide many requests in one Redis round trip",
    responses={207: {"model": BatchResponse, "description": "Some checks name an unknown policy (per-item errors)"}},
)
async def check_batch(body: BatchRequest, request: Request) -> JSONResponse:
    started = time.perf_counter()
    node = node_of(request)
    if len(body.checks) > node.settings.max_batch:
        raise invalid(
            ("body", "checks"),
            f"{len(body.checks)} checks, above the maximum of {node.settings.max_batch} (RATELIMITER_MAX_BATCH)",
            "too_long",
        )
    prepared = []
    unknown: dict[int, dict[str, Any]] = {}  # index -> its per-item problem
    for index, item in enumerate(body.checks):
        policy = node.policies.get(item.policy)
        if policy is None:
            unknown[index] = {
                "policy": item.policy,
                "error": problem_body(404, f"checks.{index}: unknown policy {item.policy!r}"),
            }
            continue
        check_key(item.key, max_bytes=node.settings.max_key_bytes, loc=("body", "checks", index, "key"))
        if item.now_ms is not None:
            raise invalid(("body", "checks", index, "now_ms"), "now_ms is not accepted in a batch")
        if item.cost == 0:
            raise invalid(("body", "checks", index, "cost"), "a peek (cost 0) is a single check, not a batch item")
        check_enforceable(node, policy, ("body", "checks", index, "policy"))
        check_cost_fits(policy, item.key, item.cost, ("body", "checks", index, "cost"))
        prepared.append((policy, item.key, item.cost))
    decided = [i for i in range(len(body.checks)) if i not in unknown]
    try:
        outcomes = await decide_many(node, prepared) if prepared else []
    except BatchItemError as exc:
        raise invalid(("body", "checks", decided[exc.index]), str(exc)) from None
    version = node.policies.version
    results: list[dict[str, Any]] = [{}] * len(body.checks)
    for index, outcome in zip(decided, outcomes):
        results[index] = result_body(outcome, version)
    for index, item_problem in unknown.items():
        results[index] = item_problem
    # 207: some items hold their own error; the others were decided independently.
    response = JSONResponse({"results": results}, status_code=207 if unknown else 200)
    node.metrics.check_latency.labels("batch").observe(time.perf_counter() - started)
    return response
