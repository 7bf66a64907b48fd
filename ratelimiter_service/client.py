"""A client of the rate limiter for Python services, sync and async (httpx, pooled connections).

    with RateLimitClient("http://127.0.0.1:8080", deadline_ms=100, failure_mode="open") as limiter:
        outcome = limiter.check("user-42", policy="api")
        if not outcome.allowed:
            ...  # 429, with outcome.headers

    async with AsyncRateLimitClient(url) as limiter:
        outcome = await limiter.check_limits([("per_second", "user-42", 1), ("per_hour", "user-42", 1)])

The node's deadline bounds its own wait for Redis; this client bounds its wait for the node
(`deadline_ms`) the same way: when the node cannot be reached or does not answer in time (or
answers 5xx), the client's `failure_mode` decides, flagged in `failure_mode` and
`decided_by_client`, with nothing claimed about the quota. A caller's mistake (unknown policy,
a cost that never fits, a bad key) raises `RateLimitError` naming it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

FailureMode = Literal["open", "closed"]
FORWARDED_HEADERS = (
    "ratelimit", "ratelimit-policy", "retry-after",
    "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "x-ratelimit-failure-mode",
)


class RateLimitError(Exception):
    """The limiter refused the request itself (4xx): the message is its problem detail."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class Outcome:
    allowed: bool
    policy: str
    limit: int | None = None
    remaining: int | None = None
    reset_after_ms: int | None = None
    retry_after_ms: int = 0
    failure_mode: FailureMode | None = None
    decided_by_client: bool = False
    # The IETF and legacy headers a service should send with its response.
    headers: Mapping[str, str] = field(default_factory=dict)
    # A multi-limit check: each limit's state (the node's `limits`), else empty.
    limits: tuple[Mapping[str, Any], ...] = ()


class _Common:
    def __init__(
        self, base_url: str, *, deadline_ms: int, failure_mode: FailureMode, token: str | None
    ) -> None:
        if failure_mode not in ("open", "closed"):
            raise ValueError(f"failure_mode must be open or closed, got {failure_mode!r}")
        self.failure_mode: FailureMode = failure_mode
        self._options: dict[str, Any] = {
            "base_url": base_url,
            "timeout": httpx.Timeout(deadline_ms / 1000),
            "headers": {"Authorization": f"Bearer {token}"} if token else {},
            # Reuse connections: a decision must not pay a TCP handshake.
            "limits": httpx.Limits(max_keepalive_connections=32, keepalive_expiry=30),
        }

    @staticmethod
    def _one(key: str, policy: str, cost: int) -> dict[str, Any]:
        return {"key": key, "policy": policy, "cost": cost}

    @staticmethod
    def _many(limits: Sequence[tuple[str, str, int]]) -> dict[str, Any]:
        return {"limits": [{"policy": p, "key": k, "cost": c} for p, k, c in limits]}

    def _outcome(self, response: httpx.Response, policy: str) -> Outcome:
        if response.status_code >= 500:
            return self._without_service(policy)
        body = response.json()
        if response.status_code not in (200, 429):
            raise RateLimitError(response.status_code, str(body.get("detail", body)))
        headers = {name: response.headers[name] for name in FORWARDED_HEADERS if name in response.headers}
        limits = tuple(body.get("limits", ()))
        binding = limits[body["binding"]] if limits else body
        return Outcome(
            allowed=bool(body["allowed"]),
            policy=str(binding["policy"]),
            limit=binding.get("limit"),
            remaining=binding.get("remaining"),
            reset_after_ms=binding.get("reset_after_ms"),
            retry_after_ms=int(body.get("retry_after_ms") or 0),
            failure_mode=body.get("failure_mode"),
            headers=headers,
            limits=limits,
        )

    def _without_service(self, policy: str) -> Outcome:
        allowed = self.failure_mode == "open"
        headers = {"x-ratelimit-failure-mode": self.failure_mode}
        if not allowed:
            headers["retry-after"] = "1"
        return Outcome(
            allowed=allowed, policy=policy, retry_after_ms=0 if allowed else 1000,
            failure_mode=self.failure_mode, decided_by_client=True, headers=headers,
        )


class RateLimitClient(_Common):
    """Blocking client (one pooled httpx.Client)."""

    def __init__(
        self, base_url: str, *, deadline_ms: int = 100, failure_mode: FailureMode = "open",
        token: str | None = None, transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, deadline_ms=deadline_ms, failure_mode=failure_mode, token=token)
        self._http = httpx.Client(transport=transport, **self._options)

    def check(self, key: str, policy: str = "default", cost: int = 1) -> Outcome:
        return self._post(self._one(key, policy, cost), policy)

    def peek(self, key: str, policy: str = "default") -> Outcome:
        """The state of `key`, charging nothing."""
        return self._post(self._one(key, policy, 0), policy)

    def check_limits(self, limits: Sequence[tuple[str, str, int]]) -> Outcome:
        """(policy, key, cost) limits decided atomically: all charged, or none."""
        return self._post(self._many(limits), limits[0][0] if limits else "default")

    def _post(self, body: dict[str, Any], policy: str) -> Outcome:
        try:
            response = self._http.post("/v1/check", json=body)
        except httpx.TransportError:
            return self._without_service(policy)
        return self._outcome(response, policy)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RateLimitClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncRateLimitClient(_Common):
    """asyncio client (one pooled httpx.AsyncClient)."""

    def __init__(
        self, base_url: str, *, deadline_ms: int = 100, failure_mode: FailureMode = "open",
        token: str | None = None, transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, deadline_ms=deadline_ms, failure_mode=failure_mode, token=token)
        self._http = httpx.AsyncClient(transport=transport, **self._options)

    async def check(self, key: str, policy: str = "default", cost: int = 1) -> Outcome:
        return await self._post(self._one(key, policy, cost), policy)

    async def peek(self, key: str, policy: str = "default") -> Outcome:
        return await self._post(self._one(key, policy, 0), policy)

    async def check_limits(self, limits: Sequence[tuple[str, str, int]]) -> Outcome:
        return await self._post(self._many(limits), limits[0][0] if limits else "default")

    async def _post(self, body: dict[str, Any], policy: str) -> Outcome:
        try:
            response = await self._http.post("/v1/check", json=body)
        except httpx.TransportError:
            return self._without_service(policy)
        return self._outcome(response, policy)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncRateLimitClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
