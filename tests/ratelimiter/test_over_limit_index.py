"""The over-limit index behind `GET /v1/keys?over_limit=true` (issue 20, finding 8).

A flood of keys made the SCAN behind that listing miss its deadline forever, blinding the
operator's `over_limit` observation. The scripts now keep a bounded sorted set of the keys
they leave with nothing remaining; the listing reads it and never scans. These tests prove it
correct (exactly the used-up keys, reset ones gone), bounded, and independent of the
keyspace (200k keys and not one SCAN); how fast it answers is the benchmark's figure.
"""

from __future__ import annotations

import asyncio

import pytest
import redis
import redis.asyncio as aioredis

from cluster import LocalCluster, redis_cluster  # noqa: F401  (fixture)
from nodes import AUTH, in_process_node
from ratelimiter_service.keys import limiter_key, over_limit_index_key
from ratelimiter_service.limiter import Limiter
from ratelimiter_service.loadgen import flood_keyspace
from ratelimiter_service.policies import Policy
from redis_versions import redis62_server, run, versioned_redis_url  # noqa: F401  (fixtures)

pytestmark = pytest.mark.redis

ALGORITHMS = ["sliding_window", "sliding_log", "gcra"]


def policies(limit: int = 3) -> dict[str, Policy]:
    return {a: Policy(name=a, limit=limit, window_ms=60_000, algorithm=a) for a in ALGORITHMS}


async def use_up(limiter: Limiter, policy: Policy, key: str) -> None:
    for _ in range(policy.limit):
        assert (await limiter.check(policy, key)).allowed


def test_used_up_keys_are_indexed_and_listed_without_a_scan(versioned_redis_url: str) -> None:
    admin = redis.Redis.from_url(versioned_redis_url)

    async def main() -> None:
        client = aioredis.Redis.from_url(versioned_redis_url)
        limiter = Limiter(client)
        known = policies()
        try:
            for policy in known.values():
                await use_up(limiter, policy, "full")  # the last admission leaves 0: indexed
                assert (await limiter.check(policy, "half")).allowed
            # Denials of a used-up key keep it indexed; a peek writes nothing.
            gcra = known["gcra"]
            await use_up(limiter, gcra, "denied")
            assert not (await limiter.check(gcra, "denied")).allowed
            await limiter.usage(known["sliding_window"], "half")

            expected = {(a, "full") for a in ALGORITHMS} | {("gcra", "denied")}
            indexed = set(await limiter.over_limit_index())
            assert indexed == {limiter_key("rl", p, k, p) for p, k in expected}
            admin.config_resetstat()
            listed = await limiter.active_keys(known, over_limit=True)
            assert {(u.policy, u.key) for u in listed} == expected
            assert all(u.remaining == 0 and u.used >= u.limit for u in listed)
            assert "cmdstat_scan" not in admin.info("commandstats")

            # A reset key leaves the index with its state.
            assert await limiter.reset(known["sliding_log"], "full")
            assert limiter_key("rl", "sliding_log", "full", "sliding_log") not in await limiter.over_limit_index()
            listed = await limiter.active_keys(known, over_limit=True)
            assert ("sliding_log", "full") not in {(u.policy, u.key) for u in listed}
        finally:
            await client.aclose()

    try:
        run(main())
    finally:
        admin.close()


def test_the_index_is_bounded_and_keeps_the_latest(redis_url: str) -> None:
    async def main() -> None:
        client = aioredis.Redis.from_url(redis_url)
        limiter = Limiter(client, over_limit_index_max=5)
        short = Policy(name="short", limit=1, window_ms=60_000, algorithm="gcra")
        long = Policy(name="long", limit=1, window_ms=3_600_000, algorithm="gcra")
        try:
            for i in range(20):
                assert (await limiter.check(long if i == 7 else short, f"k{i}")).allowed
                assert await client.zcard(over_limit_index_key("rl")) <= 5
            indexed = await limiter.over_limit_index()
            assert len(indexed) == 5
            # Full: the entries that reset soonest make room, so the hour-long one stays.
            assert indexed[0] == limiter_key("rl", "long", "k7", "gcra")
            listed = await limiter.active_keys({"short": short, "long": long}, over_limit=True)
            assert len(listed) == 5 and {u.key for u in listed} == {"k7", "k16", "k17", "k18", "k19"}
        finally:
            await client.aclose()

    run(main())


def test_expired_entries_leave_the_index_when_others_arrive(redis_url: str) -> None:
    async def main() -> None:
        client = aioredis.Redis.from_url(redis_url)
        limiter = Limiter(client)
        blink = Policy(name="blink", limit=1, window_ms=20, algorithm="gcra")
        try:
            assert (await limiter.check(blink, "gone")).allowed
            while (await limiter.usage(blink, "gone")).used:  # Redis time moves on
                await asyncio.sleep(0.01)
            assert (await limiter.active_keys({"blink": blink}, over_limit=True)) == []
            assert (await limiter.check(blink, "new")).allowed
            assert await limiter.over_limit_index() == [limiter_key("rl", "blink", "new", "gcra")]
        finally:
            await client.aclose()

    run(main())


@pytest.mark.slow
def test_200k_keys_in_the_keyspace_do_not_blind_the_listing(redis_url: str) -> None:
    """The flood of finding 8, through the HTTP API of a node: 200k limiter keys, a few of them
    used up; the listing names exactly those, without one SCAN."""
    admin = redis.Redis.from_url(redis_url)
    flood = 200_000
    flood_keyspace(admin, flood)

    async def main() -> None:
        async with in_process_node(redis_url, default_limit=2) as (_, client):
            for key in ("hot-1", "hot-2"):
                for _ in range(3):
                    await client.post("/v1/check", json={"key": key})
            admin.config_resetstat()
            response = await client.get("/v1/keys", params={"over_limit": "true"}, headers=AUTH)
            assert response.status_code == 200
            assert [(k["policy"], k["key"]) for k in response.json()["keys"]] == [("default", "hot-1"), ("default", "hot-2")]
            assert "cmdstat_scan" not in admin.info("commandstats")

    try:
        assert admin.dbsize() >= flood
        run(main())
    finally:
        admin.close()


def test_on_a_cluster_the_limiter_writes_the_index_itself(redis_cluster: LocalCluster) -> None:  # noqa: F811
    redis_cluster.flush()

    async def main() -> None:
        client = aioredis.RedisCluster.from_url(redis_cluster.url)
        limiter = Limiter(client)
        known = policies(limit=2)
        try:
            for policy in known.values():
                for i in range(6):  # keys spread over the three masters' slots
                    await use_up(limiter, policy, f"user:{i}")
            results = await limiter.check_batch([(known["gcra"], "batch", 1), (known["gcra"], "batch", 1)])
            assert all(not isinstance(r, Exception) and r.allowed for r in results)
            listed = await limiter.active_keys(known, over_limit=True)
            expected = {(a, f"user:{i}") for a in ALGORITHMS for i in range(6)} | {("gcra", "batch")}
            assert {(u.policy, u.key) for u in listed} == expected
        finally:
            await client.aclose()

    run(main())
