"""HTTP API of one node, in process, against a real redis-server."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
import redis
from fastapi import FastAPI
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from nodes import AUTH, in_process_node

pytestmark = pytest.mark.redis

Scenario = Callable[[FastAPI, httpx.AsyncClient], Awaitable[None]]


def run(redis_url: str, scenario: Scenario, **settings: Any) -> None:
    async def main() -> None:
        async with in_process_node(redis_url, **settings) as (app, client):
            await scenario(app, client)

    asyncio.run(main())


async def put_policy(client: httpx.AsyncClient, name: str, **body: Any) -> int:
    response = await client.put(f"/v1/policies/{name}", json=body, headers=AUTH)
    assert response.status_code == 200, response.text
    return int(response.json()["version"])


def test_allowed_then_denied_with_draft11_and_legacy_headers(redis_url: str) -> None:
    async def scenario(app: FastAPI, client: httpx.AsyncClient) -> None:
        await put_policy(client, "tight", limit=2, window_ms=10_000, algorithm="gcra")
        first = await client.post("/v1/check", json={"policy": "tight", "key": "alice"})
        assert first.status_code == 200
        body = first.json()
        assert body["allowed"] is True and body["limit"] == 2 and body["remaining"] == 1
        assert body["policy"] == "tight" and body["policy_version"] == 1 and body["failure_mode"] is None
        assert first.headers["RateLimit-Policy"] == '"tight";q=2;w=10'
        assert re.fullmatch(r'"tight";r=1;t=\d+', first.headers["RateLimit"])
        assert first.headers["X-RateLimit-Limit"] == "2" and first.headers["X-RateLimit-Remaining"] == "1"
        assert "Retry-After" not in first.headers and "X-RateLimit-Failure-Mode" not in first.headers

        await client.post("/v1/check", json={"policy": "tight", "key": "alice"})
        denied = await client.post("/v1/check", json={"policy": "tight", "key": "alice"})
        assert denied.status_code == 429
        body = denied.json()
        assert body["allowed"] is False and body["remaining"] == 0 and body["retry_after_ms"] > 0
        # Retry-After is whole seconds, never earlier than the limiter's retry time.
        assert int(denied.headers["Retry-After"]) * 1000 >= body["retry_after_ms"]
        assert int(denied.headers["Retry-After"]) * 1000 < body["retry_after_ms"] + 1000
        assert int(denied.headers["X-RateLimit-Reset"]) * 1000 >= body["reset_after_ms"]

        other = await client.post("/v1/check", json={"policy": "tight", "key": "bob", "cost": 2})
        assert other.status_code == 200 and other.json()["remaining"] == 0

    run(redis_url, scenario)


def test_a_peek_costs_nothing_and_needs_no_token(redis_url: str) -> None:
    async def scenario(app: FastAPI, client: httpx.AsyncClient) -> None:
        await put_policy(client, "peeked", limit=2, window_ms=60_000)
        for expected_remaining in (2, 2):
            peek = await client.post("/v1/check", json={"policy": "peeked", "key": "p", "cost": 0})
            assert peek.status_code == 200 and peek.json()["remaining"] == expected_remaining
        for _ in range(2):
            assert (await client.post("/v1/check", json={"policy": "peeked", "key": "p"})).status_code == 200
        peek = await client.post("/v1/check", json={"policy": "peeked", "key": "p", "cost": 0})
        # Used up: a request would be denied, the peek itself is answered 200.
        assert peek.status_code == 200 and peek.json()["allowed"] is False and peek.json()["remaining"] == 0
        assert peek.json()["reset_after_ms"] > 0

    run(redis_url, scenario)


def test_unknown_policy_is_404_and_bad_bodies_are_422(redis_url: str) -> None:
    async def scenario(app: FastAPI, client: httpx.AsyncClient) -> None:
        missing = await client.post("/v1/check", json={"policy": "nope", "key": "k"})
        assert missing.status_code == 404
        assert "unknown policy 'nope'" in missing.json()["detail"] and "default" in missing.json()["detail"]
        assert missing.headers["content-type"] == "application/problem+json"
        assert missing.json()["status"] == 404 and missing.json()["title"] == "Not Found"
        for body in (
            {},
            {"key": ""},
            {"key": "k", "cost": -1},
            {"key": "k", "cost": 101},  # above the default limit of 100: can never fit
            {"key": "k", "extra": 1},
            {"key": "k", "policy": "bad name"},
            {"key": 5},
            {"key": "k", "now_ms": 5},  # injected time only in test mode
        ):
            response = await client.post("/v1/check", json=body)
            assert response.status_code == 422, (body, response.text)
            assert response.headers["content-type"] == "application/problem+json"
        never = await client.post("/v1/check", json={"key": "k", "cost": 101})
        assert "cost 101 can never fit" in never.json()["detail"] and never.json()["errors"][0]["loc"] == ["body", "cost"]
        malformed = await client.post("/v1/check", content=b"{not json", headers={"content-type": "application/json"})
        assert malformed.status_code == 422

    run(redis_url, scenario)


def test_long_and_unencodable_keys_are_422_naming_the_field(redis_url: str) -> None:
    async def scenario(app: FastAPI, client: httpx.AsyncClient) -> None:
        huge = await client.post("/v1/check", json={"key": "x" * 100_000})
        assert huge.status_code == 422
        assert huge.json()["errors"][0]["loc"] == ["body", "key"]
        assert "100000 bytes" in huge.json()["errors"][0]["msg"]
        # 171 three-byte characters are 513 bytes: the limit counts UTF-8 bytes, not characters.
        assert (await client.post("/v1/check", json={"key": "€" * 171})).status_code == 422
        assert (await client.post("/v1/check", json={"key": "€" * 170})).status_code == 200
        surrogate = await client.post(
            "/v1/check", content=b'{"key": "\\ud800"}', headers={"content-type": "application/json"}
        )
        assert surrogate.status_code == 422 and surrogate.json()["errors"][0]["loc"] == ["body", "key"]
        batch = await client.post("/v1/check/batch", json={"checks": [{"key": "ok"}, {"key": "y" * 600}]})
        assert batch.status_code == 422 and batch.json()["errors"][0]["loc"] == ["body", "checks", 1, "key"]

    run(redis_url, scenario)


def test_batch_decides_in_order_and_validates(redis_url: str) -> None:
    async def scenario(app: FastAPI, client: httpx.AsyncClient) -> None:
        await put_policy(client, "three", limit=3, window_ms=60_000, algorithm="sliding_log")
        checks = [{"policy": "three", "key": "k"} for _ in range(5)] + [{"key": "k"}]
        response = await client.post("/v1/check/batch", json={"checks": checks})
        assert response.status_code == 200
        results = response.json()["results"]
        assert [r["allowed"] for r in results] == [True, True, True, False, False, True]
        assert [r["remaining"] for r in results[:3]] == [2, 1, 0]
        assert [r["policy"] for r in results] == ["three"] * 5 + ["default"]

        # An unknown policy is that item's error; the other items are decided (207).
        unknown = await client.post(
            "/v1/check/batch", json={"checks": [{"key": "a"}, {"policy": "x", "key": "a"}, {"key": "a"}]}
        )
        assert unknown.status_code == 207
        first, missing, last = unknown.json()["results"]
        assert first["allowed"] and last["allowed"] and last["remaining"] == first["remaining"] - 1
        assert missing["policy"] == "x" and missing["error"]["status"] == 404 and "checks.1" in missing["error"]["detail"]
        assert (await client.post("/v1/check/batch", json={"checks": []})).status_code == 422
        too_many = await client.post("/v1/check/batch", json={"checks": [{"key": "a"}] * 11})
        assert too_many.status_code == 422 and "RATELIMITER_MAX_BATCH" in too_many.text

    run(redis_url, scenario, max_batch=10)


def test_management_requires_the_token(redis_url: str) -> None:
    async def with_token(app: FastAPI, client: httpx.AsyncClient) -> None:
        assert (await client.get("/v1/policies")).status_code == 401
        wrong = await client.get("/v1/policies", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"] == "Bearer"
        assert (await client.get("/v1/policies", headers=AUTH)).status_code == 200
        # Decisions never need the token.
        assert (await client.post("/v1/check", json={"key": "k"})).status_code == 200

    async def without_token(app: FastAPI, client: httpx.AsyncClient) -> None:
        refused = await client.get("/v1/nodes", headers=AUTH)
        assert refused.status_code == 403 and "RATELIMITER_TOKEN" in refused.json()["detail"]

    async def insecure(app: FastAPI, client: httpx.AsyncClient) -> None:
        assert (await client.get("/v1/nodes")).status_code == 200

    run(redis_url, with_token)
    run(redis_url, without_token, token=None)
    run(redis_url, insecure, token=None, insecure_dev=True)


def test_policies_are_validated_versioned_and_deletable(redis_url: str) -> None:
    async def scenario(app: FastAPI, client: httpx.AsyncClient) -> None:
        listed = (await client.get("/v1/policies", headers=AUTH)).json()
        assert listed["version"] == 0 and set(listed["policies"]) == {"default"}
        assert listed["policies"]["default"]["limit"] == 7

        v1 = await put_policy(client, "api", limit=10, window_ms=1000, overrides={"vip": 100})
        v2 = await put_policy(client, "api", limit=20, window_ms=1000, shadow=True)
        assert v2 == v1 + 1
        listed = (await client.get("/v1/policies", headers=AUTH)).json()
        assert listed["version"] == v2 and listed["policies"]["api"]["limit"] == 20

        for body in (
            {"limit": 0, "window_ms": 1000},
            {"limit": 5},
            {"limit": 5, "window_ms": 1000, "algorithm": "leaky"},
            {"limit": 5, "window_ms": 1000, "failure_mode": "maybe"},
            {"limit": 5, "window_ms": 1000, "overrides": {"k": 0}},
            {"limit": 5000, "window_ms": 1000, "algorithm": "sliding_log"},
            {"limit": 5, "window_ms": 1000, "algorithm": "sliding_log", "overrides": {"k": 5000}},
            {"limit": 5, "window_ms": 1000, "surprise": True},
        ):
            response = await client.put("/v1/policies/bad", json=body, headers=AUTH)
            assert response.status_code == 422, (body, response.text)
        log_refused = await client.put(
            "/v1/policies/bad", json={"limit": 5000, "window_ms": 1000, "algorithm": "sliding_log"}, headers=AUTH
        )
        assert "RATELIMITER_MAX_LOG_LIMIT" in log_refused.text
        assert (await client.put("/v1/policies/bad%20name", json={"limit": 1, "window_ms": 1}, headers=AUTH)).status_code == 422

        assert (await client.delete("/v1/policies/default", headers=AUTH)).status_code == 409
        assert (await client.delete("/v1/policies/ghost", headers=AUTH)).status_code == 404
        deleted = await client.delete("/v1/policies/api", headers=AUTH)
        assert deleted.status_code == 200 and deleted.json()["version"] == v2 + 1
        assert (await client.post("/v1/check", json={"policy": "api", "key": "k"})).status_code == 404

    run(redis_url, scenario, default_limit=7)


def test_shadow_policy_admits_and_reports_would_deny(redis_url: str) -> None:
    async def scenario(app: FastAPI, client: httpx.AsyncClient) -> None:
        await put_policy(client, "watch", limit=1, window_ms=60_000, shadow=True)
        first = await client.post("/v1/check", json={"policy": "watch", "key": "k"})
        second = await client.post("/v1/check", json={"policy": "watch", "key": "k"})
        assert first.status_code == 200 and first.json()["shadow_denied"] is False
        assert second.status_code == 200 and second.json()["shadow_denied"] is True
        assert "Retry-After" not in second.headers
        metrics = (await client.get("/metrics")).text
        assert 'ratelimiter_decisions_total{policy="watch",result="shadow_denied"} 1.0' in metrics
        assert 'ratelimiter_decisions_total{policy="watch",result="allowed"} 1.0' in metrics

    run(redis_url, scenario)


def test_keys_listing_peek_and_reset(redis_url: str) -> None:
    async def scenario(app: FastAPI, client: httpx.AsyncClient) -> None:
        await put_policy(client, "p", limit=2, window_ms=60_000)
        for key in ("full", "full", "half"):
            await client.post("/v1/check", json={"policy": "p", "key": key})
        listed = (await client.get("/v1/keys", headers=AUTH)).json()["keys"]
        assert {(k["policy"], k["key"], k["used"], k["remaining"]) for k in listed} == {
            ("p", "full", 2, 0),
            ("p", "half", 1, 1),
        }
        over = (await client.get("/v1/keys", params={"over_limit": "true"}, headers=AUTH)).json()["keys"]
        assert [k["key"] for k in over] == ["full"]

        one = await client.get("/v1/keys/p/full", headers=AUTH)
        assert one.status_code == 200 and one.json()["used"] == 2 and one.json()["limit"] == 2
        assert (await client.get("/v1/keys/nope/full", headers=AUTH)).status_code == 404

        reset = await client.delete("/v1/keys/p/full", headers=AUTH)
        assert reset.status_code == 200 and reset.json()["reset"] is True
        assert (await client.post("/v1/check", json={"policy": "p", "key": "full"})).status_code == 200
        assert (await client.delete("/v1/keys/p/never-seen", headers=AUTH)).json()["reset"] is False

        # Keys with slashes and unicode travel in the path.
        await client.post("/v1/check", json={"policy": "p", "key": "a/b:ü"})
        peek = await client.get("/v1/keys/p/a/b:ü", headers=AUTH)
        assert peek.json()["key"] == "a/b:ü" and peek.json()["used"] == 1

    run(redis_url, scenario)


def test_health_ready_metrics_and_node_listing(redis_url: str) -> None:
    async def scenario(app: FastAPI, client: httpx.AsyncClient) -> None:
        assert (await client.get("/health")).json() == {"status": "ok", "node_id": "api-node"}
        ready = await client.get("/ready")
        assert ready.status_code == 200 and ready.json()["ready"] is True
        for _ in range(3):
            await client.post("/v1/check", json={"key": "k"})
        metrics = (await client.get("/metrics")).text
        assert 'ratelimiter_decisions_total{policy="default",result="allowed"} 3.0' in metrics
        assert 'ratelimiter_check_latency_seconds_count{endpoint="check"} 3.0' in metrics
        assert "ratelimiter_heartbeat_age_seconds" in metrics and "ratelimiter_policy_version 0.0" in metrics

        node = app.state.node
        nodes: list[dict[str, Any]] = []
        async with asyncio.timeout(5):
            while not any(n["decisions"] == 3 for n in nodes):  # the next heartbeat carries them
                nodes = (await client.get("/v1/nodes", headers=AUTH)).json()["nodes"]
                await asyncio.sleep(0.02)
        assert nodes[0]["id"] == "api-node" and nodes[0]["state"] == "up"
        assert nodes[0]["address"] == node.settings.address

    run(redis_url, scenario, node_id="api-node", heartbeat_interval_ms=50)


def test_frozen_node_enforces_stale_policies_until_reloaded(redis_url: str) -> None:
    """The test-mode freeze produces real policy drift; POST /v1/policies/reload repairs it."""

    async def main() -> None:
        async with in_process_node(redis_url, test_mode=True, policy_refresh=False) as (_, frozen):
            async with in_process_node(redis_url, policy_refresh_interval_ms=20) as (live_app, live):
                version = await put_policy(live, "new", limit=5, window_ms=1000)
                async with asyncio.timeout(5):
                    while live_app.state.node.policies.version < version:
                        await asyncio.sleep(0.01)
                stale = (await frozen.get("/v1/policies", headers=AUTH)).json()
                assert stale["version"] == 0 and "new" not in stale["policies"]
                assert (await frozen.post("/v1/check", json={"policy": "new", "key": "k"})).status_code == 404
                reloaded = await frozen.post("/v1/policies/reload", headers=AUTH)
                assert reloaded.status_code == 200 and reloaded.json()["version"] == version
                assert (await frozen.post("/v1/check", json={"policy": "new", "key": "k"})).status_code == 200

    asyncio.run(main())


def test_injected_time_is_honoured_in_test_mode(redis_url: str) -> None:
    async def scenario(app: FastAPI, client: httpx.AsyncClient) -> None:
        await put_policy(client, "sec", limit=1, window_ms=1000, algorithm="sliding_log")
        at = 1_000_000_000
        assert (await client.post("/v1/check", json={"policy": "sec", "key": "k", "now_ms": at})).status_code == 200
        again = await client.post("/v1/check", json={"policy": "sec", "key": "k", "now_ms": at + 500})
        assert again.status_code == 429 and again.json()["retry_after_ms"] == 500
        later = await client.post("/v1/check", json={"policy": "sec", "key": "k", "now_ms": at + 1000})
        assert later.status_code == 200

    run(redis_url, scenario, test_mode=True)


TRICKY_KEYS = [
    "a:b", "a}:b", "{a}", "a{b}", "a%3Ab", "a%3ab", "a_b", "a b", "a+b", "a/b", "a\\b", "*", "?", "[a]",
    "é", "e\u0301", "É", "😀", "\u00a0", " ", "%", "%25", "}", "{", "{}", "}{", "p.q:x", "p:x", "x" * 512,
]
CONFUSABLE = st.text(alphabet=st.sampled_from(list(":{}%é😀")), min_size=1, max_size=3)


def test_keys_never_collide_across_policies_or_with_each_other(redis_url: str) -> None:
    """Limit 1 per key: every key of a set is admitted once per policy, so no two share state."""

    async def main() -> None:
        async with in_process_node(redis_url) as (_, client):
            for name in ("p", "p.q"):
                await put_policy(client, name, limit=1, window_ms=600_000)
            raw = redis.Redis.from_url(redis_url)

            async def decide(policy: str, keys: list[str]) -> list[bool]:
                checks = [{"policy": policy, "key": key} for key in keys]
                response = await client.post("/v1/check/batch", json={"checks": checks})
                return [result["allowed"] for result in response.json()["results"]]

            async def check_set(keys: list[str]) -> None:
                assert await decide("p", keys) == [True] * len(keys)
                assert await decide("p.q", keys) == [True] * len(keys)
                assert await decide("p", keys) == [False] * len(keys)

            @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
            @given(keys=st.lists(CONFUSABLE, min_size=2, max_size=40, unique=True))
            @example(keys=TRICKY_KEYS)
            def sets(keys: list[str]) -> None:
                raw.delete(*(raw.keys("rl:lim:*") or ["none"]))
                asyncio.run_coroutine_threadsafe(check_set(keys), loop).result()

            loop = asyncio.get_running_loop()
            try:
                await asyncio.to_thread(sets)
            finally:
                raw.close()

    asyncio.run(main())


def test_the_api_docs_page_needs_no_network(redis_url: str) -> None:
    async def scenario(app: FastAPI, client: httpx.AsyncClient) -> None:
        page = await client.get("/docs")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        html = page.text
        assert "/v1/check/batch" in html and "/v1/policies/{name}" in html and "/openapi.json" in html
        # Nothing is loaded from elsewhere: no script, stylesheet or image from another host.
        assert "<script" not in html and "http://" not in html and "https://" not in html
        assert (await client.get("/redoc")).status_code == 404

    run(redis_url, scenario)
