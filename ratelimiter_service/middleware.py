"""An ASGI middleware that rate-limits a FastAPI/Starlette app through the limiter service.

    app.add_middleware(
        RateLimitMiddleware,
        limiter=AsyncRateLimitClient("http://127.0.0.1:8080"),
        key=lambda request: request.client.host if request.client else None,
        policy="api",
    )

Each HTTP request is checked under `policy` with the key `key(request)` returns (None: not
limited). Denied: the app is not called, the answer is 429 (RFC 9457 problem+json) with
`Retry-After` and the IETF `RateLimit`/`RateLimit-Policy` headers; admitted: the app's response
carries the same headers. The client's deadline and failure mode apply when the service is
unreachable.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ratelimiter_service.api.problems import PROBLEM_JSON, problem_body
from ratelimiter_service.client import AsyncRateLimitClient


class RateLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        limiter: AsyncRateLimitClient,
        key: Callable[[Request], str | None],
        policy: str = "default",
        cost: int = 1,
    ) -> None:
        self.app = app
        self.limiter = limiter
        self.key = key
        self.policy = policy
        self.cost = cost

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        key = self.key(Request(scope))
        if key is None:
            await self.app(scope, receive, send)
            return
        outcome = await self.limiter.check(key, self.policy, self.cost)
        headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in outcome.headers.items()]
        if not outcome.allowed:
            body = json.dumps(problem_body(429, f"rate limited by policy {outcome.policy!r}")).encode()
            await send({
                "type": "http.response.start",
                "status": 429,
                "headers": [(b"content-type", PROBLEM_JSON.encode()),
                            (b"content-length", str(len(body)).encode()), *headers],
            })
            await send({"type": "http.response.body", "body": body})
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *headers]}
            await send(message)

        await self.app(scope, receive, with_headers)
