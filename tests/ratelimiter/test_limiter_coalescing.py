"""CoalescingLimiter against real Redis: same decisions as the Limiter, fewer round trips."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from engine.lab.redis_server import RedisServer
from ratelimiter_service.limiter import CoalescingLimiter, Decision, Limiter
from ratelimiter_service.policies import Policy

pytestmark = pytest.mark.redis

NOW = 1_700_000_000_000


class CountingPipelines:
    """Wraps a client and counts the pipelines it hands out (each one is one round trip)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self.pipelines = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def pipeline(self, *args: Any, **kwargs: Any) -> Any:
        self.pipelines += 1
        return self.client.pipeline(*args, **kwargs)


@pytest.mark.parametrize("algorithm", ["sliding_window", "sliding_log", "gcra"])
def test_concurrent_checks_share_pipelines_and_admit_exactly_the_limit(redis_url: str, algorithm: str) -> None:
    async def main() -> tuple[Counter[bool], int]:
        client = CountingPipelines(aioredis.Redis.from_url(redis_url))
        limiter = CoalescingLimiter(Limiter(client), max_batch=16, max_in_flight=2)
        policy = Policy(name="p", limit=50, window_ms=600_000, algorithm=algorithm)
        try:
            decisions = await asyncio.gather(*(limiter.check(policy, "hot") for _ in range(200)))
        finally:
            await limiter.aclose()
            await client.client.aclose()
        return Counter(d.allowed for d in decisions), client.pipelines

    allowed, pipelines = asyncio.run(main())
    assert allowed == Counter({True: 50, False: 150})
    # Batches of up to 16 (13), plus a re-send of each of the 2 first batches after NOSCRIPT.
    assert pipelines <= -(-200 // 16) + 2


def test_results_in_order_with_injected_time_match_the_plain_limiter(redis_url: str) -> None:
    policy = Policy(name="p", limit=3, window_ms=1_000)

    async def decide(wrap: bool, prefix: str) -> list[Decision]:
        client = aioredis.Redis.from_url(redis_url)
        plain = Limiter(client, prefix=prefix, test_mode=True)
        limiter: Any = CoalescingLimiter(plain) if wrap else plain
        try:
            if wrap:
                return list(await asyncio.gather(*(limiter.check(policy, "k", now_ms=NOW + i) for i in range(5))))
            return [await limiter.check(policy, "k", now_ms=NOW + i) for i in range(5)]
        finally:
            await client.aclose()

    coalesced = asyncio.run(decide(True, "a"))
    plain = asyncio.run(decide(False, "b"))
    assert coalesced == plain
    assert [d.allowed for d in coalesced] == [True, True, True, False, False]


def test_a_callers_mistake_raises_at_once_and_queues_nothing(redis_url: str) -> None:
    async def main() -> None:
        client = aioredis.Redis.from_url(redis_url)
        limiter = CoalescingLimiter(Limiter(client, max_log_limit=10))
        try:
            with pytest.raises(ValueError, match="cost must be an integer"):
                limiter.check(Policy(name="p", limit=5, window_ms=1_000), "k", 0)
            with pytest.raises(ValueError, match="above the maximum of 10"):
                limiter.check(Policy(name="p", limit=11, window_ms=1_000, algorithm="sliding_log"), "k")
            assert (await limiter.check(Policy(name="p", limit=5, window_ms=1_000), "k")).allowed
        finally:
            await client.aclose()

    asyncio.run(main())


def test_a_cancelled_check_is_never_sent(redis_url: str) -> None:
    async def main() -> int:
        client = aioredis.Redis.from_url(redis_url)
        limiter = CoalescingLimiter(Limiter(client))
        policy = Policy(name="p", limit=5, window_ms=600_000)
        try:
            limiter.check(policy, "k").cancel()  # before the next loop turn flushes the queue
            await limiter.check(policy, "other")
            return (await limiter.usage(policy, "k")).used
        finally:
            await client.aclose()

    assert asyncio.run(main()) == 0


def test_redis_down_fails_each_call_with_a_redis_error_and_recovers(own_redis: RedisServer) -> None:
    policy = Policy(name="p", limit=5, window_ms=600_000)

    async def attempt() -> list[Decision | BaseException]:
        client = aioredis.Redis.from_url(own_redis.url, socket_timeout=0.2, retry=Retry(NoBackoff(), 0))
        limiter = CoalescingLimiter(Limiter(client))
        try:
            return list(await asyncio.gather(*(limiter.check(policy, f"k{i}") for i in range(5)), return_exceptions=True))
        finally:
            await client.aclose()

    assert all(isinstance(r, Decision) and r.allowed for r in asyncio.run(attempt()))
    own_redis.kill()
    failed = asyncio.run(attempt())
    assert all(isinstance(r, redis.exceptions.RedisError) for r in failed), failed
    own_redis.start()
    assert all(isinstance(r, Decision) and r.allowed for r in asyncio.run(attempt()))  # scripts reloaded
