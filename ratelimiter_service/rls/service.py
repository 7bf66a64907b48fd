"""`envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit` over gRPC, on the limiter.

Each descriptor of a request is resolved through the descriptor configuration (`config`) and
decided on its own, all in one Redis pipeline, like envoyproxy/ratelimit (which also counts
every descriptor): the overall code is OVER_LIMIT if any descriptor is. The cost is the
descriptor's `hits_addend`, else the request's (0 means 1); a cost of 0 set on a descriptor
only reads its state. When Redis fails, each policy's failure mode decides (the node's
`RATELIMITER_DEFAULT_FAILURE_MODE` for configured rules), as on the HTTP API.

The messages and stubs are made from `rls.proto` when this module is imported
(`grpc.protos_and_services`), see pyproject.toml.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import grpc

from ratelimiter_service.api.decisions import BatchItemError, Outcome, decide_many, peek_one
from ratelimiter_service.rls.config import Match, RlsConfig

if TYPE_CHECKING:
    from ratelimiter_service.app import Node

protos, services = grpc.protos_and_services("ratelimiter_service/rls/rls.proto")
Response = protos.RateLimitResponse
UNLIMITED_REMAINING = 2**32 - 1  # what envoyproxy/ratelimit answers for `unlimited: true`
UNITS = {"second": 1, "minute": 2, "hour": 3, "day": 4, "week": 7, "month": 5, "year": 6}


class RateLimitService(services.RateLimitServiceServicer):  # type: ignore[misc, name-defined]
    def __init__(self, node: Node, config: RlsConfig) -> None:
        self._node = node
        self._config = config

    async def ShouldRateLimit(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        started = time.perf_counter()
        node = self._node
        default_cost = request.hits_addend or 1
        resolved: list[tuple[Match | None, int]] = []
        for descriptor in request.descriptors:
            entries = [(entry.key, entry.value) for entry in descriptor.entries]
            cost = descriptor.hits_addend.value if descriptor.HasField("hits_addend") else default_cost
            resolved.append((self._config.match(request.domain, entries), cost))
        counted = [
            (i, match, cost)
            for i, (match, cost) in enumerate(resolved)
            if match is not None and match.rule.policy is not None and cost > 0
        ]
        outcomes: dict[int, Outcome] = {}
        try:
            if counted:
                checks = [(match.rule.policy, match.limiter_key, cost) for _, match, cost in counted]
                for (i, _, _), outcome in zip(counted, await decide_many(node, checks)):  # type: ignore[arg-type]
                    outcomes[i] = outcome
            for i, (match, cost) in enumerate(resolved):
                if match is not None and match.rule.policy is not None and cost == 0:
                    outcomes[i] = await peek_one(node, match.rule.policy, match.limiter_key, None)
        except (BatchItemError, ValueError) as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        statuses = [_status(match, outcomes.get(i)) for i, (match, _) in enumerate(resolved)]
        over = any(status.code == Response.OVER_LIMIT for status in statuses)
        node.metrics.check_latency.labels("grpc").observe(time.perf_counter() - started)
        return Response(overall_code=Response.OVER_LIMIT if over else Response.OK, statuses=statuses)


def _status(match: Match | None, outcome: Outcome | None) -> Any:
    if match is None or (match.rule.policy is None and not match.rule.deny_all):
        remaining = UNLIMITED_REMAINING if match is not None and match.rule.unlimited else 0
        return Response.DescriptorStatus(code=Response.OK, limit_remaining=remaining)
    rule = match.rule
    limit = Response.RateLimit(
        name=rule.name,
        requests_per_unit=rule.policy.limit if rule.policy is not None else 0,
        unit=UNITS.get(rule.unit or "", 0),
    )
    if rule.deny_all:
        return Response.DescriptorStatus(code=Response.OVER_LIMIT, current_limit=limit)
    assert outcome is not None
    status = Response.DescriptorStatus(
        code=Response.OK if outcome.allowed else Response.OVER_LIMIT,
        current_limit=limit,
        limit_remaining=max(0, outcome.remaining or 0),
    )
    if outcome.reset_after_ms is not None:
        status.duration_until_reset.FromMilliseconds(outcome.reset_after_ms)
    return status


async def start_server(node: Node, config: RlsConfig, host: str, port: int) -> grpc.aio.Server:
    """A gRPC server on host:port (SO_REUSEPORT: every worker of a node binds the same port)."""
    server = grpc.aio.server(options=[("grpc.so_reuseport", 1)])
    services.add_RateLimitServiceServicer_to_server(RateLimitService(node, config), server)
    if server.add_insecure_port(f"{host}:{port}") == 0:
        raise OSError(f"cannot listen on {host}:{port} for gRPC (RATELIMITER_GRPC_PORT)")
    await server.start()
    return server
