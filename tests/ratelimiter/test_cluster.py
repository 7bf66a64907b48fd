"""The limiter and the policy store on a real 3-master Redis Cluster."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from cluster import LocalCluster, redis_cluster  # noqa: F401  (fixture)
from ratelimiter_service.keys import limiter_key
from ratelimiter_service.limiter import Decision, Limiter
from ratelimiter_service.policies import Policy, PolicyStore
from redis_versions import run

ALGORITHMS = ["sliding_window", "sliding_log", "gcra"]
KEYS = [f"user:{i}" for i in range(30)] + ["{tag}", "a}b{c", "ключ"]


@pytest.fixture
def cluster(redis_cluster: LocalCluster) -> Iterator[LocalCluster]:
    redis_cluster.flush()
    yield redis_cluster


def with_cluster(cluster: LocalCluster, body: Callable[[aioredis.RedisCluster], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        client = aioredis.RedisCluster.from_url(cluster.url)
        try:
            return await body(client)
        finally:
            await client.aclose()

    return run(main())


def keys_per_node(cluster: LocalCluster) -> list[int]:
    counts = []
    for server in cluster.servers:
        client = redis.Redis(port=server.port)
        try:
            counts.append(len(client.keys("rl:lim:*")))
        finally:
            client.close()
    return counts


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_checks_spread_over_the_masters_and_count_exactly(cluster: LocalCluster, algorithm: str) -> None:
    policy = Policy(name="api", limit=3, window_ms=60_000, algorithm=algorithm)

    async def body(client: aioredis.RedisCluster) -> None:
        limiter = Limiter(client)
        for key in KEYS:
            decisions = [await limiter.check(policy, key) for _ in range(4)]
            assert [d.allowed for d in decisions] == [True, True, True, False], key
        usage = await limiter.usage(policy, "a}b{c")
        assert (usage.used, usage.remaining) == (3, 0)
        assert await limiter.reset(policy, "a}b{c") is True
        assert (await limiter.check(policy, "a}b{c")).allowed

    with_cluster(cluster, body)
    counts = keys_per_node(cluster)
    assert sum(counts) == len(KEYS) and sum(1 for c in counts if c > 0) == 3, counts


def test_batch_across_slots_answers_in_order(cluster: LocalCluster) -> None:
    window = Policy(name="w", limit=1, window_ms=60_000)
    gcra = Policy(name="g", limit=1, window_ms=60_000, algorithm="gcra")
    log = Policy(name="l", limit=1, window_ms=60_000, algorithm="sliding_log")

    async def body(client: aioredis.RedisCluster) -> None:
        limiter = Limiter(client)
        checks = [(policy, key, 1) for key in KEYS for policy in (window, gcra, log)]
        first = await limiter.check_batch(checks + [(window, "x", 0)])
        assert all(isinstance(d, Decision) and d.allowed for d in first[:-1])
        assert isinstance(first[-1], ValueError)
        again = await limiter.check_batch(checks)
        assert not any(isinstance(d, Decision) and d.allowed for d in again)
        assert all(isinstance(d, Decision) for d in again)

    with_cluster(cluster, body)


def test_active_keys_come_from_every_master(cluster: LocalCluster) -> None:
    policy = Policy(name="api", limit=2, window_ms=60_000)

    async def body(client: aioredis.RedisCluster) -> None:
        limiter = Limiter(client)
        await limiter.check_batch([(policy, key, 1) for key in KEYS])
        await limiter.check(policy, "user:0")
        listed = await limiter.active_keys({"api": policy})
        assert sorted(u.key for u in listed) == sorted(KEYS)
        over = await limiter.active_keys({"api": policy}, over_limit=True)
        assert [u.key for u in over] == ["user:0"]

    with_cluster(cluster, body)


def test_scripts_lost_on_every_master_are_reloaded(cluster: LocalCluster) -> None:
    policy = Policy(name="api", limit=5, window_ms=60_000)
    reloads: list[int] = []

    async def body(client: aioredis.RedisCluster) -> None:
        limiter = Limiter(client, on_script_reload=lambda: reloads.append(1))
        await limiter.check_batch([(policy, key, 1) for key in KEYS])
        assert reloads == [1]
        cluster.flush()
        assert (await limiter.check(policy, "user:7")).remaining == 4
        assert reloads == [1, 1]

    with_cluster(cluster, body)


def test_concurrent_checks_on_one_key_admit_exactly_the_limit(cluster: LocalCluster) -> None:
    async def main() -> None:
        clients = [aioredis.RedisCluster.from_url(cluster.url) for _ in range(3)]
        # Discover the cluster before the burst, as the service does at start: 150 first commands
        # at once would each start redis-py's lazy initialisation, which resets node connections
        # that other commands are using.
        for client in clients:
            await client.initialize()
        try:
            for algorithm in ALGORITHMS:
                policy = Policy(name=f"hot-{algorithm}", limit=50, window_ms=60_000, algorithm=algorithm)
                limiters = [Limiter(client) for client in clients]
                outcome = await asyncio.gather(*(limiters[i % 3].check(policy, "hot") for i in range(150)))
                assert sum(1 for d in outcome if d.allowed) == 50, algorithm
        finally:
            for client in clients:
                await client.aclose()

    run(main())


def test_policies_are_shared_and_republished_on_the_cluster(cluster: LocalCluster) -> None:
    default = Policy(name="default", limit=10, window_ms=1000)
    api = Policy(name="api", limit=3, window_ms=1000, algorithm="gcra")

    async def body(client: aioredis.RedisCluster) -> None:
        a, b = PolicyStore(client, default=default), PolicyStore(client, default=default)
        assert await a.put(api) == 1
        await b.refresh()
        assert b.get("api") == api
        cluster.flush()
        await b.refresh()
        fresh = PolicyStore(client, default=default)
        await fresh.refresh()
        assert fresh.get("api") == api and fresh.version == 1
        assert await a.delete("api") == 2

    with_cluster(cluster, body)


def test_limiter_keys_of_a_pair_share_a_slot_in_redis_itself(cluster: LocalCluster) -> None:
    client = redis.Redis(port=cluster.servers[0].port)
    try:
        for key in KEYS:
            slots = {
                client.execute_command("CLUSTER KEYSLOT", limiter_key("rl", "api", key, algorithm))
                for algorithm in ALGORITHMS
            }
            assert len(slots) == 1
    finally:
        client.close()
