"""The limiter against real Redis 7.x and 6.2: decisions, expiry, batches, reloads, listing."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from engine.lab.redis_server import free_port
from ratelimiter_service.limiter import INJECTED_TIME_MIN_TTL_MS, Decision, Limiter
from ratelimiter_service.policies import MAX_SLIDING_WINDOW_LIMIT, Policy
from redis_versions import redis62_server, run, versioned_redis_url  # noqa: F401  (fixtures)

ALGORITHMS = ["sliding_window", "sliding_log", "gcra"]
NOW = 1_700_000_000_000


def with_limiter(
    url: str, body: Callable[[Limiter, aioredis.Redis], Awaitable[Any]], **options: Any
) -> Any:
    async def main() -> Any:
        client = aioredis.Redis.from_url(url)
        try:
            return await body(Limiter(client, **options), client)
        finally:
            await client.aclose()

    return run(main())


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_exactly_limit_admitted_at_one_instant_then_retry_after_is_exact(
    versioned_redis_url: str, algorithm: str
) -> None:
    policy = Policy(name="api", limit=5, window_ms=1000, algorithm=algorithm)

    async def body(limiter: Limiter, client: aioredis.Redis) -> None:
        decisions = [await limiter.check(policy, "k", now_ms=NOW) for _ in range(7)]
        assert [d.allowed for d in decisions] == [True] * 5 + [False] * 2
        assert [d.remaining for d in decisions[:5]] == [4, 3, 2, 1, 0]
        assert all(d.limit == 5 for d in decisions)
        denied = decisions[-1]
        assert denied.retry_after_ms > 0 and denied.remaining == 0
        # A denial writes nothing, so probing one ms early is still denied, and on time allowed.
        early = await limiter.check(policy, "k", now_ms=NOW + denied.retry_after_ms - 1)
        assert not early.allowed
        on_time = await limiter.check(policy, "k", now_ms=NOW + denied.retry_after_ms)
        assert on_time.allowed and on_time.retry_after_ms == 0

    with_limiter(versioned_redis_url, body, test_mode=True)


def test_sliding_window_keeps_both_counts_in_one_field_of_the_current_window(versioned_redis_url: str) -> None:
    """The layout the hot path relies on: field = window index, value = p * 1e8 + c."""
    policy = Policy(name="api", limit=10, window_ms=1000)
    w = NOW // 1000

    async def body(limiter: Limiter, client: aioredis.Redis) -> None:
        (name,) = limiter._key_names("api", "k")[:1]
        state = lambda: client.hgetall(name)  # noqa: E731
        for _ in range(3):
            assert (await limiter.check(policy, "k", now_ms=NOW + 100)).allowed
        assert await state() == {str(w).encode(): b"3"}
        # Next window: the old field goes, its count becomes p.
        assert (await limiter.check(policy, "k", 2, now_ms=NOW + 1000)).allowed
        assert await state() == {str(w + 1).encode(): b"300000002"}
        # A denial (3 * 0.9 + 2 + 6 > 10) takes its increment back: the state is unchanged.
        denied = await limiter.check(policy, "k", 6, now_ms=NOW + 1100)
        assert not denied.allowed and denied.remaining == 5
        assert await state() == {str(w + 1).encode(): b"300000002"}
        # A window with no traffic in between: nothing is carried over.
        assert (await limiter.check(policy, "k", 10, now_ms=NOW + 3000)).allowed
        assert await state() == {str(w + 3).encode(): b"10"}

    with_limiter(versioned_redis_url, body, test_mode=True)


def test_sliding_window_counts_exactly_at_its_largest_limit(versioned_redis_url: str) -> None:
    """At 49,999,999 the packed value is about 5e15: below 2^53, so every count stays exact."""
    limit = MAX_SLIDING_WINDOW_LIMIT
    policy = Policy(name="api", limit=limit, window_ms=1000)

    async def body(limiter: Limiter, client: aioredis.Redis) -> None:
        full = await limiter.check(policy, "k", limit, now_ms=NOW)
        assert full.allowed and full.remaining == 0
        assert not (await limiter.check(policy, "k", 1, now_ms=NOW + 999)).allowed
        # Half way through the next window, half of p still counts: 24,999,999.5 in use.
        half = await limiter.check(policy, "k", limit // 2, now_ms=NOW + 1500)
        assert half.allowed and half.remaining == 0
        assert not (await limiter.check(policy, "k", 1, now_ms=NOW + 1500)).allowed
        usage = await limiter.usage(policy, "k", now_ms=NOW + 1999)
        assert usage.used == limit // 2 + math.ceil(limit * 0.001)

    with_limiter(versioned_redis_url, body, test_mode=True)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_cost_counts_units_and_a_cost_above_the_limit_is_never_admitted(
    versioned_redis_url: str, algorithm: str
) -> None:
    policy = Policy(name="api", limit=10, window_ms=1000, algorithm=algorithm)

    async def body(limiter: Limiter, client: aioredis.Redis) -> None:
        first = await limiter.check(policy, "k", 7, now_ms=NOW)
        assert first.allowed and first.remaining == 3
        assert not (await limiter.check(policy, "k", 4, now_ms=NOW)).allowed
        assert (await limiter.check(policy, "k", 3, now_ms=NOW)).allowed
        huge = await limiter.check(policy, "fresh", 11, now_ms=NOW)
        assert not huge.allowed and huge.retry_after_ms == 1000
        assert await client.keys("rl:lim:{fresh}:api:*") == []  # a denial writes nothing

    with_limiter(versioned_redis_url, body, test_mode=True)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_per_key_overrides_replace_the_limit(versioned_redis_url: str, algorithm: str) -> None:
    policy = Policy(name="api", limit=2, window_ms=1000, algorithm=algorithm, overrides={"vip": 4})

    async def body(limiter: Limiter, client: aioredis.Redis) -> None:
        vip = [await limiter.check(policy, "vip", now_ms=NOW) for _ in range(5)]
        other = [await limiter.check(policy, "other", now_ms=NOW) for _ in range(3)]
        assert [d.allowed for d in vip] == [True] * 4 + [False]
        assert [d.allowed for d in other] == [True] * 2 + [False]
        assert vip[0].limit == 4 and other[0].limit == 2

    with_limiter(versioned_redis_url, body, test_mode=True)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_key_expires_in_redis_time(versioned_redis_url: str, algorithm: str) -> None:
    window = 5000
    policy = Policy(name="api", limit=3, window_ms=window, algorithm=algorithm)

    async def body(limiter: Limiter, client: aioredis.Redis) -> None:
        # test_mode is off: an injected time is ignored and the TTL is a real Redis-time one.
        for _ in range(4):
            await limiter.check(policy, "k", now_ms=0)
        (name,) = await client.keys("rl:lim:*")
        ttl = await client.pttl(name)
        assert 0 < ttl <= 2 * window

    with_limiter(versioned_redis_url, body)


def test_injected_time_keys_outlive_the_test(versioned_redis_url: str) -> None:
    policy = Policy(name="api", limit=3, window_ms=10, algorithm="gcra")

    async def body(limiter: Limiter, client: aioredis.Redis) -> None:
        await limiter.check(policy, "k", now_ms=NOW)
        (name,) = await client.keys("rl:lim:*")
        assert await client.pttl(name) > INJECTED_TIME_MIN_TTL_MS - 60_000

    with_limiter(versioned_redis_url, body, test_mode=True)


@pytest.mark.parametrize("cost", [0, -1, 1.5, True, "2"])
def test_cost_must_be_a_positive_integer(versioned_redis_url: str, cost: Any) -> None:
    policy = Policy(name="api", limit=3, window_ms=1000)

    async def body(limiter: Limiter, client: aioredis.Redis) -> None:
        with pytest.raises(ValueError, match="cost must be an integer >= 1"):
            await limiter.check(policy, "k", cost)

    with_limiter(versioned_redis_url, body)


def test_exact_log_above_the_maximum_limit_is_refused(versioned_redis_url: str) -> None:
    big = Policy(name="big", limit=1001, window_ms=1000, algorithm="sliding_log")
    override = Policy(name="ovr", limit=10, window_ms=1000, algorithm="sliding_log", overrides={"vip": 5000})

    async def body(limiter: Limiter, client: aioredis.Redis) -> None:
        with pytest.raises(ValueError, match="sliding_log with a limit of 1001, above the maximum of 1000"):
            await limiter.check(big, "k")
        with pytest.raises(ValueError, match="limit of 5000"):
            await limiter.check(override, "vip")
        assert (await limiter.check(override, "other")).allowed
        assert await client.keys("rl:lim:*:big:*") == []

    with_limiter(versioned_redis_url, body)


def test_unencodable_key_is_a_value_error(versioned_redis_url: str) -> None:
    policy = Policy(name="api", limit=3, window_ms=1000)

    async def body(limiter: Limiter, client: aioredis.Redis) -> None:
        with pytest.raises(ValueError, match="not valid UTF-8"):
            await limiter.check(policy, "bad\ud800")

    with_limiter(versioned_redis_url, body)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_keys_that_look_alike_do_not_share_state(versioned_redis_url: str, algorithm: str) -> None:
    one = Policy(name="a", limit=1, window_ms=1000, algorithm=algorithm)
    two = Policy(name="a.b", limit=1, window_ms=1000, algorithm=algorithm)

    async def body(limiter: Limiter, client: aioredis.Redis) -> None:
        long_key = "ключ{}:" * 20_000
        pairs = [(one, "b:c"), (two, "c"), (one, "{x}"), (one, "x"), (one, long_key), (one, long_key + "!")]
        first = [await limiter.check(p, k, now_ms=NOW) for p, k in pairs]
        assert all(d.allowed for d in first)
        again = [await limiter.check(p, k, now_ms=NOW) for p, k in pairs]
        assert not any(d.allowed for d in again)

    with_limiter(versioned_redis_url, body, test_mode=True)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_usage_reads_without_writing_and_reset_forgets(versioned_redis_url: str, algorithm: str) -> None:
    policy = Policy(name="api", limit=4, window_ms=1000, algorithm=algorithm)

    async def body(limiter: Limiter, client: aioredis.Redis) -> None:
        empty = await limiter.usage(policy, "k", now_ms=NOW)
        assert (empty.used, empty.remaining, empty.reset_after_ms) == (0, 4, 0)
        assert await client.keys("rl:lim:*") == []
        await limiter.check(policy, "k", 3, now_ms=NOW)
        for _ in range(3):
            usage = await limiter.usage(policy, "k", now_ms=NOW)
            assert (usage.policy, usage.key, usage.used, usage.limit, usage.remaining) == ("api", "k", 3, 4, 1)
            assert usage.reset_after_ms > 0
        assert await limiter.reset(policy, "k") is True
        assert await limiter.reset(policy, "k") is False
        assert (await limiter.usage(policy, "k", now_ms=NOW)).used == 0
        assert (await limiter.check(policy, "k", 4, now_ms=NOW)).allowed

    with_limiter(versioned_redis_url, body, test_mode=True)


def test_active_keys_lists_only_limiter_keys_of_known_policies(versioned_redis_url: str) -> None:
    window = Policy(name="win", limit=2, window_ms=60_000)
    log = Policy(name="log", limit=3, window_ms=60_000, algorithm="sliding_log")
    gone = Policy(name="gone", limit=3, window_ms=60_000, algorithm="gcra")

    async def body(limiter: Limiter, client: aioredis.Redis) -> None:
        await limiter.check(window, "full", 2)
        await limiter.check(window, "half:{x}")
        await limiter.check(log, "one")
        await limiter.check(gone, "orphan")
        # Things that share the prefix but are not limiter keys.
        await client.set("rl:{pol}:version", 3)
        await client.hset("rl:{pol}:data", "win", "{}")
        await client.set("rl:nodes:node-1", "x")
        await client.set("rl:lim:{not canonical}:win::sw", "x")
        policies = {"win": window, "log": log}
        listed = await limiter.active_keys(policies)
        assert [(u.policy, u.key, u.used, u.remaining) for u in listed] == [
            ("log", "one", 1, 2),
            ("win", "full", 2, 0),
            ("win", "half:{x}", 1, 1),
        ]
        over = await limiter.active_keys(policies, over_limit=True)
        assert [(u.policy, u.key) for u in over] == [("win", "full")]
        assert len(await limiter.active_keys(policies, limit=2)) == 2
        # A policy that changed algorithm: its old state is not what it enforces now.
        switched = {"win": Policy(name="win", limit=2, window_ms=60_000, algorithm="gcra")}
        assert await limiter.active_keys(switched) == []

    with_limiter(versioned_redis_url, body)


def test_active_keys_scans_past_one_page(versioned_redis_url: str) -> None:
    policy = Policy(name="many", limit=5, window_ms=60_000)

    async def body(limiter: Limiter, client: aioredis.Redis) -> None:
        results = await limiter.check_batch([(policy, f"k{i}", 1) for i in range(1200)])
        assert all(isinstance(r, Decision) and r.allowed for r in results)
        listed = await limiter.active_keys({"many": policy}, limit=5000)
        assert len(listed) == 1200
        assert {u.key for u in listed} == {f"k{i}" for i in range(1200)}

    with_limiter(versioned_redis_url, body)


def test_batch_answers_in_order_in_one_round_trip(versioned_redis_url: str) -> None:
    window = Policy(name="w", limit=2, window_ms=60_000)
    log = Policy(name="l", limit=2, window_ms=60_000, algorithm="sliding_log")
    gcra = Policy(name="g", limit=2, window_ms=60_000, algorithm="gcra")
    too_big = Policy(name="big", limit=5000, window_ms=60_000, algorithm="sliding_log")

    async def body(limiter: Limiter, client: aioredis.Redis) -> None:
        await limiter.check(window, "warm")  # scripts loaded once, then counted from here
        await limiter.check(log, "warm")
        await limiter.check(gcra, "warm")
        await client.config_resetstat()
        checks = [(window, "a", 1), (log, "a", 1), (gcra, "a", 1), (window, "a", 2), (too_big, "a", 1), (log, "a", 0)]
        checks += [(gcra, "a", 1), (gcra, "a", 1)]
        results = await limiter.check_batch(checks)
        assert [r.allowed if isinstance(r, Decision) else type(r) for r in results] == [
            True, True, True, False, ValueError, ValueError, True, False,
        ]
        stats = await client.info("commandstats")
        # Six scripts ran as EVALSHA, and nothing else was sent (no SCRIPT EXISTS, no EVAL).
        assert stats["cmdstat_evalsha"]["calls"] == 6
        assert not {name for name in stats if name.startswith(("cmdstat_script", "cmdstat_eval|", "cmdstat_eval"))} - {"cmdstat_evalsha"}
        assert await limiter.check_batch([]) == []

    with_limiter(versioned_redis_url, body)


def test_lost_scripts_are_reloaded_and_counted(versioned_redis_url: str) -> None:
    policy = Policy(name="api", limit=10, window_ms=60_000)
    reloads: list[int] = []

    async def body(limiter: Limiter, client: aioredis.Redis) -> None:
        assert (await limiter.check(policy, "k")).remaining == 9  # first call: NOSCRIPT, load
        assert len(reloads) == 1
        assert (await limiter.check(policy, "k")).remaining == 8
        assert len(reloads) == 1
        await client.script_flush()
        assert (await limiter.check(policy, "k")).remaining == 7
        assert len(reloads) == 2
        await client.script_flush()
        results = await limiter.check_batch([(policy, "k", 1), (policy, "k", 1)])
        assert [r.remaining for r in results if isinstance(r, Decision)] == [6, 5]
        assert len(reloads) == 3

    with_limiter(versioned_redis_url, body, on_script_reload=lambda: reloads.append(1))


def test_redis_errors_reach_the_caller() -> None:
    policy = Policy(name="api", limit=10, window_ms=60_000)

    async def main() -> None:
        client = aioredis.Redis(
            port=free_port(), socket_connect_timeout=0.2, socket_timeout=0.2, retry=Retry(NoBackoff(), 0)
        )
        limiter = Limiter(client)
        try:
            with pytest.raises(redis.ConnectionError):
                await limiter.check(policy, "k")
            results = await limiter.check_batch([(policy, "k", 1), (policy, "k", 0)])
            assert isinstance(results[0], redis.ConnectionError)
            assert isinstance(results[1], ValueError)
        finally:
            await client.aclose()

    run(main())


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_concurrent_checks_over_many_connections_admit_exactly_the_limit(
    versioned_redis_url: str, algorithm: str
) -> None:
    policy = Policy(name="hot", limit=100, window_ms=60_000, algorithm=algorithm)

    async def main() -> None:
        # Four clients, each a pool of up to 20 connections: checks really interleave in Redis.
        clients = [
            aioredis.Redis(connection_pool=aioredis.BlockingConnectionPool.from_url(versioned_redis_url, max_connections=20))
            for _ in range(4)
        ]
        limiters = [Limiter(client) for client in clients]
        try:
            singles = [limiters[i % 4].check(policy, "one-key") for i in range(400)]
            batches = [limiters[i % 4].check_batch([(policy, "one-key", 1)] * 50) for i in range(4)]
            outcome = await asyncio.gather(*singles, *batches)
            decisions = outcome[:400] + [d for batch in outcome[400:] for d in batch]
            assert len(decisions) == 600
            assert sum(1 for d in decisions if isinstance(d, Decision) and d.allowed) == 100
        finally:
            for client in clients:
                await client.aclose()

    run(main())


@pytest.mark.parametrize(("algorithm", "ceiling"), [("sliding_window", 128), ("gcra", 128), ("sliding_log", 5000)])
def test_memory_per_key(redis_url: str, algorithm: str, ceiling: int) -> None:
    policy = Policy(name="default", limit=100, window_ms=60_000, algorithm=algorithm)

    async def body(limiter: Limiter, client: aioredis.Redis) -> None:
        await limiter.check(policy, "user-123456", 100)
        (name,) = await client.keys("rl:lim:*")
        assert await client.memory_usage(name, samples=0) <= ceiling

    with_limiter(redis_url, body)
