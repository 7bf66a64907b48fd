"""The FastAPI app of one node: `create_app(settings, redis_client=None)`.

A `Node` holds everything one app instance owns (Redis client, limiter, policy cache, registry,
metrics, counters, background tasks); it lives on `app.state.node`, so two apps in one process
share nothing. Background tasks, started by the app's lifespan:

- policy refresher: every `policy_refresh_interval_ms` (unless frozen by the test-mode setting
  `RATELIMITER_POLICY_REFRESH=false`, which produces real "policy drift");
- heartbeat: every `heartbeat_interval_ms` into the node registry.

`app_from_env()` is the import-string factory `python -m ratelimiter_service` gives uvicorn.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ratelimiter_service import __version__, events
from ratelimiter_service.api import checks, docs_page, management, ops
from ratelimiter_service.api.models import Problem
from ratelimiter_service.api.problems import problem
from ratelimiter_service.events import NodeEvents
from ratelimiter_service.limiter import CoalescingLimiter, Limiter
from ratelimiter_service.metrics import Metrics
from ratelimiter_service.policies import Policy, PolicyStore
from ratelimiter_service.redis_client import (
    RedisClient,
    RedisProgress,
    build_redis_client,
    warm_up,
    repeating_within,
)
from ratelimiter_service.registry import NodeCounters, NodeRegistry, run_heartbeats
from ratelimiter_service.rls.config import RlsConfig, load_rls_config
from ratelimiter_service.settings import Settings, load_settings

logger = logging.getLogger("ratelimiter_service")

# Management calls (SCAN, policy sync) may take longer than one decision, but never unbounded.
MIN_MANAGEMENT_TIMEOUT_S = 1.0
GRPC_GRACE_S = 1.0


class Node:
    """One app instance's parts and background tasks."""

    def __init__(
        self,
        settings: Settings,
        client: RedisClient,
        *,
        owns_client: bool,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.client = client
        self.owns_client = owns_client
        self.node_id = settings.resolved_node_id
        self.instance = settings.instance_id or uuid.uuid4().hex
        self.metrics = Metrics(self.node_id, clock=monotonic)
        # Envoy's rate limit service: its configuration is read here (a mistake stops the
        # node at once), its gRPC server started with the node.
        self.rls_config = (
            load_rls_config(
                settings.rls_config, algorithm=settings.default_algorithm, failure_mode=settings.default_failure_mode
            )
            if settings.rls_config
            else RlsConfig({})
        )
        self._grpc_server: Any = None
        limiter = Limiter(
            client,
            prefix=settings.prefix,
            test_mode=settings.test_mode,
            max_log_limit=settings.max_log_limit,
            over_limit_index_max=settings.over_limit_index_max,
            on_script_reload=self.metrics.script_reloads.inc,
            retries=settings.redis_retries,
            on_index_error=lambda exc: self.redis_error("over_limit_index", exc),
            on_retry=lambda exc: self.metrics.redis_retries.inc(),
        )
        # Concurrent single checks share pipelines (unless RATELIMITER_COALESCE_CHECKS=false):
        # one round trip (one Redis write and read syscall) for all the checks that arrive together.
        self.limiter: Limiter | CoalescingLimiter = (
            CoalescingLimiter(limiter) if settings.coalesce_checks else limiter
        )
        self.policies = PolicyStore(
            client,
            default=settings.default_policy,
            prefix=settings.prefix,
            on_version=self._policies_changed,
        )
        self.metrics.know_policies([*self.policies.all(), *self.rls_config.policies])
        self.registry = NodeRegistry(
            client,
            prefix=settings.prefix,
            stale_after_ms=settings.stale_after_ms,
            down_after_ms=settings.down_after_ms,
            ttl_s=settings.registry_ttl_s,
            timeout_s=self.management_timeout_s,
        )
        self.events = NodeEvents(self.node_id)
        self.counters = NodeCounters()
        self.redis_progress = RedisProgress()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def management_timeout_s(self) -> float:
        return max(MIN_MANAGEMENT_TIMEOUT_S, 20 * self.settings.deadline_s)

    async def refresh_policies(self) -> int:
        """Bring the policy cache up to date now (or re-publish it); raises Redis errors."""
        await repeating_within(self.policies.refresh, self.management_timeout_s, progress=self.redis_progress)
        return self.policies.version

    def known_policies(self) -> dict[str, Policy]:
        """The stored and built-in policies, and those of the RLS configuration."""
        return {**self.rls_config.policies, **self.policies.all()}

    async def start(self) -> None:
        if self.settings.grpc_port is not None:
            from ratelimiter_service.rls.service import start_server  # grpc only when asked for

            self._grpc_server = await start_server(self, self.rls_config, self.settings.host, self.settings.grpc_port)
        try:
            await self.refresh_policies()
        except RedisError as exc:
            self.redis_error("policy_refresh", exc)
            logger.warning("node %s starts without Redis policies (serving built-ins): %s", self.node_id, exc)
        else:
            await warm_up(self.client, self.settings.redis_max_connections)
        if self.settings.policy_refresh:
            self._tasks.append(asyncio.create_task(self._refresh_forever(), name="policy-refresher"))
        else:
            logger.warning("node %s: policy refresh is frozen (test mode); policies may drift", self.node_id)
        self._tasks.append(
            asyncio.create_task(
                run_heartbeats(
                    self.registry,
                    counters=self.counters,
                    identity=lambda: (self.node_id, self.instance, self.settings.address, self.policies.version),
                    interval_s=self.settings.heartbeat_interval_ms / 1000,
                    on_success=self._heartbeat_written,
                    on_error=self._heartbeat_failed,
                ),
                name="heartbeat",
            )
        )

    async def stop(self) -> None:
        if self._grpc_server is not None:
            await self._grpc_server.stop(GRPC_GRACE_S)
            self._grpc_server = None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.limiter.aclose()
        if self.owns_client:
            try:
                await self.client.aclose()
            except RedisError as exc:
                # redis-py waits for each connection's close no longer than the connect timeout,
                # the Redis deadline (50 ms): a loaded machine can miss that. The sockets are
                # closed either way; a slow goodbye must not fail the node's shutdown.
                logger.debug("node %s: closing the Redis client: %s", self.node_id, exc)

    async def _refresh_forever(self) -> None:
        interval = self.settings.policy_refresh_interval_ms / 1000
        while True:
            await asyncio.sleep(interval)
            try:
                await self.refresh_policies()
            except RedisError as exc:
                self.redis_error("policy_refresh", exc)
                logger.debug("policy refresh failed, keeping version %d: %s", self.policies.version, exc)

    def _policies_changed(self, version: int) -> None:
        self.metrics.policy_version.set(version)
        self.metrics.know_policies(self.policies.all())

    def redis_error(self, operation: str, exc: BaseException) -> None:
        """A failed Redis call: counted by kind, and a `redis_lost` event if it is the first."""
        self.metrics.redis_error(operation, exc)
        self.events.redis_failed(operation, exc)

    def _heartbeat_written(self) -> None:
        self.metrics.heartbeat_written()
        self.events.redis_answered()

    def _heartbeat_failed(self, exc: BaseException) -> None:
        self.redis_error("heartbeat", exc)
        logger.debug("heartbeat failed: %s", exc)


def create_app(settings: Settings, redis_client: RedisClient | None = None) -> FastAPI:
    """A node's app; it closes `redis_client` on shutdown only if it built it itself."""
    client = redis_client if redis_client is not None else build_redis_client(settings)
    node = Node(settings, client, owns_client=redis_client is None)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await node.start()
        try:
            yield
        finally:
            await node.stop()

    app = FastAPI(
        title="ratelimiter_service",
        version=__version__,
        description=(
            "Distributed rate limiter: decisions in Redis Lua scripts with Redis time, shared "
            "versioned policies, node registry, Prometheus metrics. Management endpoints need "
            "`Authorization: Bearer <RATELIMITER_TOKEN>`."
        ),
        lifespan=lifespan,
        # The default pages load their assets from a CDN; ours is static (api/docs_page.py).
        docs_url=None,
        redoc_url=None,
    )
    app.state.node = node
    unreadable = {400: {"model": Problem, "description": "The body is not parseable (e.g. not UTF-8)"}}
    app.include_router(checks.router, responses=unreadable)
    app.include_router(management.router, responses=unreadable)
    app.include_router(ops.router)
    app.include_router(docs_page.router)
    app.add_exception_handler(RedisError, _redis_unavailable)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(StarletteHTTPException, _http_problem)
    return app


async def _redis_unavailable(request: Request, exc: Exception) -> JSONResponse:
    return problem(503, f"Redis did not answer in time ({type(exc).__name__}: {exc}); try again")


async def _http_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return problem(exc.status_code, str(exc.detail), headers=exc.headers)


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """422 with each problem's place and message (inputs are left out: they may be huge)."""
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(error.get("loc", ())), "msg": str(error.get("msg", "")), "type": str(error.get("type", ""))}
        for error in exc.errors()
    ]
    summary = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors)
    return problem(422, summary, errors=errors)


def app_from_env() -> FastAPI:
    """uvicorn factory: settings from `RATELIMITER_*` variables."""
    events.configure()
    return create_app(load_settings())
