"""The Python client (sync and async) and the ASGI middleware, against a real node process."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from nodes import AUTH, TOKEN, NodeGroup
from ratelimiter_service.client import AsyncRateLimitClient, RateLimitClient, RateLimitError
from ratelimiter_service.middleware import RateLimitMiddleware
from tests.ports import free_port

pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def node(redis_server: object) -> Iterator[str]:
    with NodeGroup(redis_server.url, count=1, env={"RATELIMITER_TOKEN": TOKEN}, id_prefix="client") as nodes:  # type: ignore[attr-defined]
        url = nodes[0].url
        for name, body in {"three": {"rate": "3/minute"}, "hourly": {"rate": "10/hour"}}.items():
            assert httpx.put(f"{url}/v1/policies/{name}", json=body, headers=AUTH).status_code == 200
        yield url


def test_the_sync_client_checks_peeks_and_checks_several(node: str) -> None:
    with RateLimitClient(node, deadline_ms=2000) as limiter:
        outcomes = [limiter.check("sync", policy="three") for _ in range(4)]
        assert [o.allowed for o in outcomes] == [True, True, True, False]
        assert outcomes[0].remaining == 2 and outcomes[0].headers["ratelimit"].startswith('"three";r=2;t=')
        assert outcomes[3].retry_after_ms > 0 and "retry-after" in outcomes[3].headers
        assert not any(o.decided_by_client for o in outcomes)
        peeked = limiter.peek("sync", policy="three")
        assert peeked.remaining == 0 and not peeked.allowed
        both = limiter.check_limits([("three", "multi", 1), ("hourly", "multi", 1)])
        assert both.allowed and [lim["policy"] for lim in both.limits] == ["three", "hourly"]
        with pytest.raises(RateLimitError, match="unknown policy"):
            limiter.check("x", policy="nope")
        with pytest.raises(RateLimitError, match="can never fit"):
            limiter.check("x", policy="three", cost=4)


def test_the_async_client_reuses_its_connections(node: str) -> None:
    async def main() -> None:
        async with AsyncRateLimitClient(node, deadline_ms=2000) as limiter:
            outcomes = await asyncio.gather(*(limiter.check("async", policy="three") for _ in range(5)))
            assert sorted(o.allowed for o in outcomes) == [False, False, True, True, True]

    asyncio.run(main())


def test_an_unreachable_service_gets_the_client_side_failure_mode() -> None:
    closed_port = f"http://127.0.0.1:{free_port()}"
    with RateLimitClient(closed_port, failure_mode="open") as limiter:
        outcome = limiter.check("k")
        assert outcome.allowed and outcome.decided_by_client and outcome.failure_mode == "open"
        assert outcome.remaining is None and "ratelimit" not in outcome.headers
    with RateLimitClient(closed_port, failure_mode="closed") as limiter:
        outcome = limiter.check("k")
        assert not outcome.allowed and outcome.decided_by_client and outcome.headers["retry-after"] == "1"


def test_a_service_that_does_not_answer_is_given_up_at_the_deadline() -> None:
    with socket.socket() as silent:  # accepts connections (the kernel does), never answers
        silent.bind(("127.0.0.1", free_port()))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"

        async def main() -> None:
            async with AsyncRateLimitClient(url, deadline_ms=50, failure_mode="closed") as limiter:
                outcome = await limiter.check("k")
                assert not outcome.allowed and outcome.decided_by_client

        asyncio.run(main())


def test_the_middleware_limits_an_app_and_sets_the_headers(node: str) -> None:
    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hello")

    async def main() -> None:
        async with AsyncRateLimitClient(node, deadline_ms=2000) as limiter:
            app = Starlette(routes=[Route("/", hello)])
            app.add_middleware(
                RateLimitMiddleware, limiter=limiter, key=lambda r: r.headers.get("x-user"), policy="three"
            )
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:
                answers = [await client.get("/", headers={"x-user": "mw"}) for _ in range(4)]
                assert [a.status_code for a in answers] == [200, 200, 200, 429]
                assert answers[0].text == "hello" and answers[0].headers["ratelimit"].startswith('"three";r=2')
                assert answers[0].headers["ratelimit-policy"] == '"three";q=3;w=60'
                denied = answers[3]
                assert denied.headers["content-type"] == "application/problem+json"
                assert denied.json()["status"] == 429 and int(denied.headers["retry-after"]) >= 1
                # No key: not limited.
                assert [(await client.get("/")).status_code for _ in range(5)] == [200] * 5

    asyncio.run(main())
