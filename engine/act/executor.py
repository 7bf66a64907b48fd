"""Executors: send a rendered ActionRequest to its declared target, and nowhere else.

`Executor` is the seam the loop calls (`Monitor(..., executor=...)`): `TargetExecutor` talks to
the real targets, `RecordingExecutor` records requests and answers success (for `opctl test` and
for tests of the gate that must not touch a system).

HTTP goes only to the declared target's base URL (its endpoints), never follows redirects (a
redirect could lead elsewhere), carries the target's bearer token and uses the target's timeout.
Modes: single; failover: the first endpoint that answers (a connection failure or timeout moves
on; any HTTP status is an answer); fanout: every endpoint, each result recorded, success only
when all succeed. A 2xx status is success. Redis runs the rendered write command (checked
against the allowed writes once more) with the target's password.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
import redis.asyncio as aredis
from redis import exceptions as rexc

from engine.act.request import ActionRequest
from engine.config.models import Target
from engine.config.validate import LoadedConfig
from engine.durations import format_duration
from engine.observe.http_source import join_url, request_headers
from engine.observe.values import one_line
from engine.redact import Redactor
from engine.redis_commands import write_refusal
from engine.tls import tls_context

EXCERPT = 1024  # characters of a response kept in the audit log


@dataclass(frozen=True)
class EndpointResult:
    endpoint: str
    ok: bool
    status: int | None  # HTTP status; None for redis or when nothing answered
    response: str  # excerpt, redacted
    error: str | None = None
    answered: bool = True  # False: nothing answered (connection failure, timeout)

    def as_json(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "ok": self.ok, "status": self.status, "response": self.response, "error": self.error}


@dataclass(frozen=True)
class ExecutionOutcome:
    """What running one request gave: success, a one-line status, a response excerpt."""

    ok: bool
    status: str  # "HTTP 204", "OK", "connection refused to ...", ...
    response: str  # excerpt (≤ EXCERPT characters), redacted
    results: tuple[EndpointResult, ...] = ()
    error: str | None = None


class Executor(Protocol):
    async def execute(self, request: ActionRequest) -> ExecutionOutcome: ...

    async def aclose(self) -> None: ...


@dataclass
class RecordingExecutor:
    """Records every request and answers success without sending anything."""

    requests: list[ActionRequest] = field(default_factory=list)

    async def execute(self, request: ActionRequest) -> ExecutionOutcome:
        self.requests.append(request)
        return ExecutionOutcome(ok=True, status="recorded", response="")

    async def aclose(self) -> None:
        return None


class TargetExecutor:
    """Runs requests against the config's declared targets. Clients live in one event loop."""

    def __init__(self, loaded: LoadedConfig) -> None:
        self._targets = loaded.config.targets
        self._redactor = Redactor(loaded.secrets)
        self._http: httpx.AsyncClient | None = None

    async def execute(self, request: ActionRequest) -> ExecutionOutcome:
        target = self._targets.get(request.target)
        if target is None:  # validate refuses this; a defence for hand-built configs
            return ExecutionOutcome(False, f"target {request.target!r} is not declared", "", error="undeclared target")
        endpoints = target.endpoints
        if target.effective_mode == "fanout":
            results = await asyncio.gather(*(self._one(request, target, e) for e in endpoints))
        elif target.effective_mode == "failover":
            results = []
            for endpoint in endpoints:
                result = await self._one(request, target, endpoint)
                results.append(result)
                if result.answered:
                    break
        else:
            results = [await self._one(request, target, endpoints[0])]
        return self._outcome(tuple(results), fanout=target.effective_mode == "fanout")

    async def aclose(self) -> None:
        if self._http is not None:
            http, self._http = self._http, None
            await http.aclose()

    # ------------------------------------------------------------------ one endpoint

    async def _one(self, request: ActionRequest, target: Target, endpoint: str) -> EndpointResult:
        redact = self._redactor.text
        try:
            async with asyncio.timeout(target.timeout):
                if request.kind == "http":
                    status, text = await self._http_call(request, target, endpoint)
                    return EndpointResult(redact(endpoint), 200 <= status < 300, status, _excerpt(redact(text)),
                                          None if 200 <= status < 300 else f"HTTP {status}")
                reply = await self._redis_call(request, target, endpoint)
                return EndpointResult(redact(endpoint), True, None, _excerpt(redact(reply)))
        except TimeoutError:
            return EndpointResult(redact(endpoint), False, None, "", f"timeout after {format_duration(target.timeout)}", answered=False)
        except httpx.HTTPError as exc:
            return EndpointResult(redact(endpoint), False, None, "", redact(f"{type(exc).__name__}: {one_line(str(exc))}"), answered=False)
        except rexc.ResponseError as exc:  # the server answered with an error
            return EndpointResult(redact(endpoint), False, None, _excerpt(redact(str(exc))), redact(f"redis error: {one_line(str(exc))}"))
        except (rexc.RedisError, OSError) as exc:
            return EndpointResult(redact(endpoint), False, None, "", redact(f"{type(exc).__name__}: {one_line(str(exc))}"), answered=False)

    async def _http_call(self, request: ActionRequest, target: Target, endpoint: str) -> tuple[int, str]:
        if self._http is None:
            self._http = httpx.AsyncClient(follow_redirects=False, verify=tls_context())
        headers = request_headers(target, request.headers)
        assert request.path is not None and request.method is not None
        joined = urlsplit(join_url(endpoint, request.request_target))
        url = httpx.URL(joined.geturl())
        sent, audited = url.raw_path.decode("ascii"), joined.path + (f"?{joined.query}" if joined.query else "")
        if sent != audited:
            # the audit line must be what goes on the wire; a URL library that rewrote it is refused
            raise httpx.InvalidURL(f"the request would be sent as {sent!r}, not as audited ({audited!r})")
        content = None
        if request.body is not None:
            content = json.dumps(request.body).encode()
            headers.setdefault("Content-Type", "application/json")
        response = await self._http.request(request.method, url, headers=headers, content=content, timeout=target.timeout)
        return response.status_code, response.text

    async def _redis_call(self, request: ActionRequest, target: Target, endpoint: str) -> str:
        refusal = write_refusal(request.command, request.key_prefix)  # checked when rendered; checked again here
        if refusal is not None:
            raise rexc.RedisError(f"refused to send: {refusal.reason}")
        client = aredis.Redis.from_url(
            endpoint, password=target.token or None, socket_timeout=target.timeout,
            socket_connect_timeout=target.timeout, decode_responses=True,
        )
        try:
            reply = await client.execute_command(*request.command)
        finally:
            await client.aclose()
        return reply if isinstance(reply, str) else json.dumps(reply, default=str)

    @staticmethod
    def _outcome(results: tuple[EndpointResult, ...], *, fanout: bool) -> ExecutionOutcome:
        ok = bool(results) and (all(r.ok for r in results) if fanout else results[-1].ok)
        if fanout:
            good = sum(r.ok for r in results)
            status = f"{good} of {len(results)} endpoints succeeded"
            response = _excerpt(json.dumps([r.as_json() for r in results]))
        else:
            last = results[-1]
            status = f"HTTP {last.status}" if last.status is not None else ("OK" if last.ok else (last.error or "failed"))
            response = last.response
        errors = [f"{r.endpoint}: {r.error}" for r in results if r.error]
        return ExecutionOutcome(ok, status, response, results, None if ok else "; ".join(errors) or status)


def _excerpt(text: str) -> str:
    return text if len(text) <= EXCERPT else text[: EXCERPT - 12] + " [cut]"


def outcome_json(outcome: ExecutionOutcome) -> Mapping[str, Any]:
    return {"ok": outcome.ok, "status": outcome.status, "endpoints": [r.as_json() for r in outcome.results]}
