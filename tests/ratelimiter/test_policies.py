"""Policies: validation, versioned storage in real Redis, caching, and surviving a lost Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from tests.ports import free_port
from ratelimiter_service.policies import Policy, PolicyStore
from redis_versions import redis62_server, run, versioned_redis_url  # noqa: F401  (fixtures)

DEFAULT = Policy(name="default", limit=100, window_ms=60_000)


def with_stores(url: str, body: Callable[..., Awaitable[Any]], nodes: int = 2) -> Any:
    """Run `body(client, store_a, store_b, ...)`: several nodes' stores on one Redis."""

    async def main() -> Any:
        client = aioredis.Redis.from_url(url)
        try:
            stores = [PolicyStore(client, default=DEFAULT) for _ in range(nodes)]
            return await body(client, *stores)
        finally:
            await client.aclose()

    return run(main())


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"name": "bad name"}, "name"),
        ({"name": "a:b"}, "name"),
        ({"name": "x" * 65}, "name"),
        ({"limit": 0}, "limit"),
        ({"window_ms": 0}, "window_ms"),
        ({"algorithm": "leaky_bucket"}, "algorithm"),
        ({"failure_mode": "maybe"}, "failure_mode"),
        ({"overrides": {"vip": 0}}, "override for key 'vip'"),
        ({"burst": 3}, "burst"),
        ({"limit": 50_000_000}, "sliding_window counts at most 49,999,999 per window, got a limit of 50,000,000"),
        ({"overrides": {"vip": 50_000_000}}, "sliding_window counts at most 49,999,999"),
    ],
)
def test_invalid_policies_are_refused_naming_the_field(fields: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        Policy.model_validate({"name": "p", "limit": 10, "window_ms": 1000, **fields})


def test_only_sliding_window_has_the_packed_count_bound() -> None:
    assert Policy(name="p", limit=49_999_999, window_ms=1000).limit == 49_999_999
    assert Policy(name="p", limit=1_000_000_000, window_ms=1000, algorithm="gcra").limit == 1_000_000_000


def test_limit_for_uses_the_override_of_the_key() -> None:
    policy = Policy(name="p", limit=10, window_ms=1000, overrides={"vip": 50})
    assert (policy.limit_for("vip"), policy.limit_for("other")) == (50, 10)
    with pytest.raises(ValidationError):
        policy.limit = 3  # type: ignore[misc]  (frozen)


def test_the_default_policy_is_built_in(versioned_redis_url: str) -> None:
    async def body(client: aioredis.Redis, store: PolicyStore) -> None:
        assert store.get("default") == DEFAULT
        assert store.get("nope") is None
        assert store.all() == {"default": DEFAULT}
        await store.refresh()
        assert store.version == 0
        with pytest.raises(ValueError, match="built in and cannot be deleted"):
            await store.delete("default")
        with pytest.raises(ValueError, match="must be named 'default'"):
            PolicyStore(client, default=Policy(name="other", limit=1, window_ms=1))

    with_stores(versioned_redis_url, body, nodes=1)


def test_writes_bump_one_version_that_other_nodes_load(versioned_redis_url: str) -> None:
    api = Policy(name="api", limit=10, window_ms=1000, algorithm="gcra", shadow=True, overrides={"k": 3})

    async def body(client: aioredis.Redis, a: PolicyStore, b: PolicyStore) -> None:
        assert await a.put(api) == 1
        assert a.get("api") == api and a.version == 1
        assert b.get("api") is None
        await b.refresh()
        assert b.get("api") == api and b.version == 1
        assert await b.put(api.model_copy(update={"limit": 20})) == 2
        await a.refresh()
        assert a.get("api").limit == 20  # type: ignore[union-attr]
        assert await a.delete("missing") == 2  # nothing to delete: the version stays
        assert await a.delete("api") == 3
        await b.refresh()
        assert b.get("api") is None and b.version == 3
        # An operator's own default replaces the built-in one.
        assert await a.put(Policy(name="default", limit=5, window_ms=10)) == 4
        await b.refresh()
        assert b.get("default").limit == 5  # type: ignore[union-attr]

    with_stores(versioned_redis_url, body)


def test_concurrent_writers_get_distinct_increasing_versions(versioned_redis_url: str) -> None:
    async def body(client: aioredis.Redis, *stores: PolicyStore) -> None:
        writes = [stores[i % 4].put(Policy(name=f"p{i}", limit=i + 1, window_ms=1000)) for i in range(40)]
        versions = await asyncio.gather(*writes)
        assert sorted(versions) == list(range(1, 41))
        await stores[0].refresh()
        assert len(stores[0].all()) == 41 and stores[0].version == 40

    with_stores(versioned_redis_url, body, nodes=4)


def test_lost_policies_are_republished_from_the_cache(versioned_redis_url: str) -> None:
    api = Policy(name="api", limit=10, window_ms=1000)
    web = Policy(name="web", limit=20, window_ms=1000)

    async def body(client: aioredis.Redis, a: PolicyStore, b: PolicyStore) -> None:
        await a.put(api)
        await a.put(web)
        await client.flushall()  # what a Redis restart without persistence looks like
        await a.refresh()
        assert await client.get("rl:{pol}:version") == b"2"
        fresh = PolicyStore(client, default=DEFAULT)
        await fresh.refresh()
        assert fresh.all() == {"default": DEFAULT, "api": api, "web": web} and fresh.version == 2

        # Lost again; this time the first thing to happen is a write on the other node
        # (which knows version 0): the version must not go backwards, nothing is dropped.
        await client.flushall()
        assert await fresh.put(Policy(name="new", limit=1, window_ms=1)) == 3
        await b.refresh()
        assert set(b.all()) == {"default", "api", "web", "new"} and b.version == 3

    with_stores(versioned_redis_url, body)


def test_an_invalid_stored_policy_is_skipped_not_fatal(versioned_redis_url: str) -> None:
    async def body(client: aioredis.Redis, a: PolicyStore, b: PolicyStore) -> None:
        await a.put(Policy(name="good", limit=1, window_ms=1))
        await client.hset("rl:{pol}:data", mapping={"broken": "{not json", "liar": Policy(name="x", limit=1, window_ms=1).model_dump_json()})
        await client.incr("rl:{pol}:version")
        await b.refresh()
        assert set(b.all()) == {"default", "good"} and b.version == 2

    with_stores(versioned_redis_url, body)


def test_refresher_picks_up_changes_within_a_second(versioned_redis_url: str) -> None:
    async def body(client: aioredis.Redis, a: PolicyStore, b: PolicyStore) -> None:
        task = asyncio.create_task(b.run_refresher(interval_s=0.1))
        try:
            await a.put(Policy(name="api", limit=1, window_ms=1))
            started = time.monotonic()
            while b.get("api") is None:
                assert time.monotonic() - started < 1.0, "node b did not see the new policy within 1 s"
                await asyncio.sleep(0.02)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    with_stores(versioned_redis_url, body)


def test_refresher_survives_redis_errors_and_keeps_the_cache() -> None:
    async def main() -> None:
        client = aioredis.Redis(
            port=free_port(), socket_connect_timeout=0.1, socket_timeout=0.1, retry=Retry(NoBackoff(), 0)
        )
        store = PolicyStore(client, default=DEFAULT)
        task = asyncio.create_task(store.run_refresher(interval_s=0.01))
        try:
            started = time.monotonic()
            while store.refresh_errors < 3:
                assert time.monotonic() - started < 5.0, "refresh errors were not counted"
                await asyncio.sleep(0.01)
            assert not task.done()
            assert store.get("default") == DEFAULT
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await client.aclose()

    run(main())


def test_rates_and_durations_are_accepted_where_limit_and_window_ms_are() -> None:
    from ratelimiter_service.api.models import PolicySpec
    from ratelimiter_service.policies import parse_duration_ms, parse_rate

    assert parse_rate("100/minute") == (100, 60_000)
    assert parse_rate("10 per second") == (10, 1_000)
    assert parse_rate("1000/5m") == (1000, 300_000)
    assert parse_rate("5/2 hours") == (5, 7_200_000)
    assert [parse_duration_ms(d) for d in ("250ms", "1s", "1m", "1h30m", "2 days")] == [
        250, 1_000, 60_000, 5_400_000, 172_800_000,
    ]
    assert PolicySpec.model_validate("100/minute").limit == 100
    spec = PolicySpec.model_validate({"limit": 3, "window_ms": "1m", "algorithm": "gcra"})
    assert (spec.limit, spec.window_ms, spec.algorithm) == (3, 60_000, "gcra")
    for wrong, message in (
        ({"rate": "lots"}, "is not a rate"),
        ({"rate": "5/fortnight"}, "is not a rate"),
        ({"limit": 3, "window_ms": "soon"}, "is not a duration"),
        ({"limit": 3, "window_ms": "3 weeks"}, "unknown unit"),
        ({"rate": "5/s", "limit": 3}, "either rate or limit"),
    ):
        with pytest.raises(ValidationError, match=message):
            PolicySpec.model_validate(wrong)


@given(count=st.integers(1, 10**6), multiple=st.integers(1, 100), unit=st.sampled_from(["ms", "s", "m", "h", "d"]))
def test_a_rate_is_its_count_per_its_window(count: int, multiple: int, unit: str) -> None:
    from ratelimiter_service.policies import parse_duration_ms, parse_rate

    assert parse_rate(f"{count}/{multiple}{unit}") == (count, parse_duration_ms(f"{multiple}{unit}"))
    assert parse_rate(f"{count} per {multiple} {unit}") == parse_rate(f"{count}/{multiple}{unit}")
