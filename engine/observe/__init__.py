"""Observations: run every declared query of a tick concurrently, each under its own timeout.

`Observer.observe_all()` returns one `ObservationResult` per observation. A failed observation
(endpoint down, timeout, HTTP error, bad payload, failing `select`) is a result with `ok=False`
and a one-line `error`; it never raises, so one broken source cannot stop a tick.

Every value, error and endpoint is redacted here, before anything else sees it.

Sources (one module each): `http_source`, `prometheus_source`, `metrics_source`,
`redis_source`; endpoint modes in `targets`; value conversions in `values`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpx
import redis.asyncio as aredis

from engine.config.models import Observation, Target
from engine.config.validate import LoadedConfig
from engine.durations import format_duration
from engine.errors import ConfigError, ExpressionCompileError, ExpressionEvalError, ObservationError
from engine.expr import CompiledExpr, compile_expr, to_python
from engine.observe import http_source, metrics_source, prometheus_source, redis_source
from engine.observe.targets import TargetOutcome, observe_target
from engine.observe.values import one_line
from engine.redact import Redactor
from engine.tls import tls_context

__all__ = ["ObservationResult", "Observer"]


@dataclass(frozen=True)
class ObservationResult:
    name: str
    ok: bool
    value: Any  # JSON-like; None when not ok
    error: str | None  # one-line reason when not ok
    duration_s: float
    endpoint: str | None  # which endpoint answered (single / failover)
    endpoint_errors: tuple[tuple[str, str], ...] = ()  # (endpoint, reason) for every endpoint that failed


class Observer:
    """Makes the observations of one config; keeps HTTP and Redis connections across ticks.

    Clients are bound to the event loop that first uses them: run every tick in one loop and
    call `aclose()` in it at the end.
    """

    def __init__(
        self,
        loaded: LoadedConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = loaded.config
        self._redactor = Redactor(loaded.secrets)
        self._clock = clock
        self._wall_clock = wall_clock
        self._selects: dict[str, CompiledExpr] = {}
        self._vars = self._config.variable_values()
        for name, obs in self._config.observations.items():
            self._target(name, obs)  # an undeclared target is a config error, found before any tick
            if obs.select is not None:
                try:
                    self._selects[name] = compile_expr(obs.select)
                except ExpressionCompileError as exc:
                    raise ConfigError(f"observations.{name}.select: {exc}") from None
        self._http: httpx.AsyncClient | None = None
        self._redis: dict[tuple[str, str | None, float], aredis.Redis] = {}
        self._scrapes: dict[str, metrics_source.MetricsSession] = {}

    # ------------------------------------------------------------------ public

    async def observe_all(self, names: Iterable[str] | None = None) -> dict[str, ObservationResult]:
        """Every observation (or those named), concurrently; failures are results, not exceptions."""
        chosen = list(self._config.observations) if names is None else list(dict.fromkeys(names))
        for name in chosen:
            self._observation(name)
        results = await asyncio.gather(*(self.observe(name) for name in chosen))
        return dict(zip(chosen, results))

    async def observe(self, name: str) -> ObservationResult:
        obs = self._observation(name)
        target = self._target(name, obs)
        timeout = obs.timeout if obs.timeout is not None else target.timeout
        now = self._wall_clock()
        started = self._clock()
        try:
            outcome = await observe_target(
                target.effective_mode,
                target.endpoints,
                lambda endpoint: self._attempt(name, obs, target, endpoint, timeout, now),
            )
        except Exception as exc:  # a defect in one observation must not stop the tick
            reason = f"internal error: {type(exc).__name__}: {one_line(str(exc))}"
            outcome = TargetOutcome(False, None, reason, None, ())
        return self._result(name, outcome, self._clock() - started, fanout=target.effective_mode == "fanout")

    async def aclose(self) -> None:
        clients = list(self._redis.values())
        self._redis.clear()
        for client in clients:
            await client.aclose()
        if self._http is not None:
            http, self._http = self._http, None
            await http.aclose()

    # ------------------------------------------------------------------ one endpoint

    async def _attempt(self, name: str, obs: Observation, target: Target, endpoint: str, timeout: float, now: float) -> Any:
        try:
            async with asyncio.timeout(timeout):
                raw = await self._fetch(name, obs, target, endpoint, timeout)
            return self._project(name, obs, raw, now)
        except TimeoutError:
            raise ObservationError(f"timeout after {format_duration(timeout)} from {endpoint}") from None
        except ObservationError:
            raise
        except Exception as exc:  # an unexpected reply shape is this endpoint's failure only
            raise ObservationError(
                f"unexpected {type(exc).__name__} from {endpoint}: {one_line(str(exc))}"
            ) from None

    async def _fetch(self, name: str, obs: Observation, target: Target, endpoint: str, timeout: float) -> Any:
        if obs.http is not None:
            return await http_source.fetch(obs.http, endpoint, target, timeout, self._http_client())
        if obs.prometheus is not None:
            return await prometheus_source.fetch(obs.prometheus, endpoint, target, timeout, self._http_client())
        if obs.metrics is not None:
            return await metrics_source.fetch(obs.metrics, endpoint, target, timeout, self._scrape_session(name))
        if obs.redis is not None:
            return await redis_source.fetch(obs.redis, endpoint, target, timeout, self._redis_client(endpoint, target, timeout))
        raise AssertionError(f"observation {name!r} has no kind")

    def _project(self, name: str, obs: Observation, raw: Any, now: float) -> Any:
        """The observation value: the raw value, or what `select` makes of it."""
        select = self._selects.get(name)
        if isinstance(raw, http_source.HttpReply):
            if not raw.success and (select is None or "status" not in select.names):
                raise http_source.status_error(raw)
            if select is None:
                return raw.body
            env = {"body": raw.body, "status": raw.status, "headers": raw.headers, "now": now, "vars": self._vars}
        elif select is None:
            return raw
        else:
            env = {"value": raw, "now": now, "vars": self._vars}
        try:
            return to_python(select.evaluate(env))
        except ExpressionEvalError as exc:
            raise ObservationError(f"select failed: {one_line(str(exc))}") from None

    # ------------------------------------------------------------------ helpers

    def _observation(self, name: str) -> Observation:
        obs = self._config.observations.get(name)
        if obs is None:
            known = ", ".join(sorted(self._config.observations))
            raise ConfigError(f"there is no observation named '{name}'; declared observations: {known}")
        return obs

    def _target(self, name: str, obs: Observation) -> Target:
        target = self._config.targets.get(obs.query.target)
        if target is None:
            raise ConfigError(f"observation '{name}' uses target '{obs.query.target}', which is not declared")
        return target

    def _http_client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(follow_redirects=False, verify=tls_context())
        return self._http

    def _scrape_session(self, name: str) -> metrics_source.MetricsSession:
        session = self._scrapes.get(name)
        if session is None or session.client is not self._http_client():
            session = self._scrapes[name] = metrics_source.MetricsSession(self._http_client())
        return session

    def _redis_client(self, endpoint: str, target: Target, timeout: float) -> aredis.Redis:
        key = (endpoint, target.token, timeout)
        client = self._redis.get(key)
        if client is None:
            client = self._redis[key] = redis_source.open_client(endpoint, target, timeout)
        return client

    def _result(self, name: str, outcome: TargetOutcome, duration: float, *, fanout: bool) -> ObservationResult:
        # Redacted at the source, so every later use (items, snapshots, messages, prompts, --json)
        # sees only the masked value: a target that echoes a credential back cannot leak it.
        redact = self._redactor.text
        return ObservationResult(
            name=name,
            ok=outcome.ok,
            value=self._redactor.value(outcome.value) if outcome.ok else None,
            error=redact(outcome.error) if outcome.error is not None else None,
            duration_s=duration,
            endpoint=redact(outcome.endpoint) if outcome.endpoint is not None else None,
            endpoint_errors=tuple((redact(e), redact(r)) for e, r in outcome.endpoint_errors),
        )
