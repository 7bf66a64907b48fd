"""Atomic multi-limit checks: `POST /v1/check` with `limits`, decided in one Lua script run.

Admitted only if every limit admits, and then all are charged; if any denies, none is. The
property test drives random limits and costs from concurrent callers over three real node
processes and checks every key's usage against what was admitted.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cluster import LocalCluster, redis_cluster  # noqa: F401  (fixture)
from nodes import AUTH, TOKEN, NodeGroup, in_process_node
from ratelimiter_service.limiter import Limiter
from ratelimiter_service.policies import Policy
from redis_versions import redis62_server, run, versioned_redis_url  # noqa: F401  (fixtures)

pytestmark = pytest.mark.redis

NOW = 1_700_000_000_000
ALGORITHMS = ["sliding_window", "sliding_log", "gcra"]


async def put(client: httpx.AsyncClient, name: str, **body: Any) -> None:
    response = await client.put(f"/v1/policies/{name}", json=body, headers=AUTH)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_denied_check_charges_no_limit(versioned_redis_url: str, algorithm: str) -> None:
    async def main() -> None:
        async with in_process_node(versioned_redis_url, test_mode=True) as (_, client):
            await put(client, "burst", limit=2, window_ms=1_000, algorithm=algorithm)
            await put(client, "hourly", limit=5, window_ms=3_600_000, algorithm="gcra")
            limits = [{"policy": "burst", "key": "u"}, {"policy": "hourly", "key": "u"}]
            answers = [
                await client.post("/v1/check", json={"limits": limits, "now_ms": NOW + i}) for i in range(4)
            ]
            assert [a.status_code for a in answers] == [200, 200, 429, 429], [a.json() for a in answers]
            denied = answers[2].json()
            assert denied["allowed"] is False and denied["binding"] == 0
            assert [(lim["policy"], lim["allowed"]) for lim in denied["limits"]] == [("burst", False), ("hourly", True)]
            assert denied["retry_after_ms"] > 0 and answers[2].headers["retry-after"]
            assert answers[2].headers["ratelimit-policy"].startswith('"burst"')
            # The hourly limit was charged by the two admitted checks only.
            assert denied["limits"][1]["remaining"] == 3
            later = await client.post("/v1/check", json={"limits": limits, "now_ms": NOW + 5_000})
            assert later.status_code == 200 and later.json()["limits"][1]["remaining"] == 2

    run(main())


def test_multi_limit_input_mistakes_are_refused(redis_url: str) -> None:
    async def main() -> None:
        async with in_process_node(redis_url) as (_, client):
            await put(client, "a", limit=5, window_ms=1_000)
            await put(client, "b", limit=5, window_ms=60_000, algorithm="sliding_log")

            async def status(body: dict[str, Any]) -> tuple[int, str]:
                response = await client.post("/v1/check", json=body)
                return response.status_code, response.text

            code, text = await status({"limits": [{"policy": "a", "key": "x"}, {"policy": "b", "key": "y"}]})
            assert code == 422 and "share a hash tag" in text
            # Keys with one {tag} share a slot: accepted.
            shared = [{"policy": "a", "key": "user:{7}:api"}, {"policy": "b", "key": "user:{7}:web"}]
            assert (await status({"limits": shared}))[0] == 200
            code, text = await status({"limits": [{"policy": "a", "key": "x"}, {"policy": "a", "key": "x"}]})
            assert code == 422 and "twice" in text
            assert (await status({"limits": [{"policy": "nope", "key": "x"}]}))[0] == 404
            assert (await status({"limits": [{"policy": "a", "key": "x", "cost": 6}]}))[0] == 422  # never fits
            assert (await status({"limits": [{"policy": "a", "key": f"k{i}"} for i in range(17)]}))[0] == 422
            assert (await status({"limits": [{"key": "x"}], "key": "x"}))[0] == 422
            assert (await status({"limits": []}))[0] == 422

    run(main())


def test_without_redis_a_closed_limit_denies_the_check(own_redis: Any) -> None:
    async def main() -> None:
        async with in_process_node(own_redis.url, redis_deadline_ms=50) as (_, client):
            await put(client, "open", limit=5, window_ms=1_000, failure_mode="open")
            await put(client, "closed", limit=5, window_ms=1_000, failure_mode="closed")
            own_redis.kill()
            both = await client.post(
                "/v1/check", json={"limits": [{"policy": "open", "key": "k"}, {"policy": "closed", "key": "k"}]}
            )
            assert both.status_code == 429 and both.json()["failure_mode"] == "closed"
            assert all(lim["remaining"] is None for lim in both.json()["limits"])
            only_open = await client.post("/v1/check", json={"limits": [{"policy": "open", "key": "k"}]})
            assert only_open.status_code == 200 and only_open.json()["failure_mode"] == "open"

    run(main())


def test_a_multi_limit_check_on_a_cluster(redis_cluster: LocalCluster) -> None:  # noqa: F811
    redis_cluster.flush()

    async def main() -> None:
        client = aioredis.RedisCluster.from_url(redis_cluster.url)
        limiter = Limiter(client)
        policies = [Policy(name=a, limit=2, window_ms=60_000, algorithm=a) for a in ALGORITHMS]
        try:
            for i in range(10):  # keys over the three masters' slots
                key = f"user:{i}"
                results = [await limiter.check_all([(p, key, 1) for p in policies]) for _ in range(3)]
                assert [r.allowed for r in results] == [True, True, False]
                assert [(await limiter.usage(p, key)).used for p in policies] == [2, 2, 2]
            listed = await limiter.active_keys({p.name: p for p in policies}, over_limit=True)
            assert len(listed) == 30
        finally:
            await client.aclose()

    run(main())


# ----------------------------------------------------------------------------- property


@pytest.fixture(scope="module")
def three_nodes(redis_server: Any) -> Iterator[NodeGroup]:
    env = {"RATELIMITER_TOKEN": TOKEN, "RATELIMITER_POLICY_REFRESH_INTERVAL_MS": "50"}
    with NodeGroup(redis_server.url, count=3, env=env, id_prefix="multi") as nodes:
        yield nodes


_examples = itertools.count()

limit_sets = st.lists(
    st.tuples(st.sampled_from(ALGORITHMS), st.integers(1, 6)), min_size=1, max_size=4
)
checks = st.lists(
    st.lists(st.tuples(st.integers(0, 3), st.integers(1, 3)), min_size=1, max_size=4), min_size=1, max_size=24
)


@pytest.mark.slow
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(limit_sets, checks)
def test_concurrent_multi_limit_checks_never_over_charge(
    three_nodes: NodeGroup, limits: list[tuple[str, int]], requests: list[list[tuple[int, int]]]
) -> None:
    """Random limits and costs from concurrent callers over 3 nodes: each key is charged exactly
    the costs of the checks that were admitted (so never above its limit), and a denied check
    charged nothing."""
    run_id = next(_examples)
    names = [f"m{run_id}-{i}" for i in range(len(limits))]
    urls = [node.url for node in three_nodes.nodes]

    async def main() -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            for name, (algorithm, limit) in zip(names, limits):
                # A day-long window: usage cannot decay or change window during the example.
                await put_on(client, urls[0], name, limit=limit, window_ms=86_400_000, algorithm=algorithm)
            for url in urls:
                assert (await client.post(f"{url}/v1/policies/reload", headers=AUTH)).status_code == 200

            async def one(index: int, request: list[tuple[int, int]]) -> tuple[bool, list[tuple[str, int]]]:
                chosen: dict[str, int] = {}
                for which, cost in request:
                    name = names[which % len(names)]
                    chosen.setdefault(name, min(cost, limits[names.index(name)][1]))
                body = {"limits": [{"policy": n, "key": "shared", "cost": c} for n, c in chosen.items()]}
                response = await client.post(f"{urls[index % 3]}/v1/check", json=body)
                assert response.status_code in (200, 429), response.text
                assert response.json()["failure_mode"] is None
                return response.status_code == 200, list(chosen.items())

            outcomes = await asyncio.gather(*(one(i, r) for i, r in enumerate(requests)))
            charged: dict[str, int] = defaultdict(int)
            for admitted, chosen in outcomes:
                if admitted:
                    for name, cost in chosen:
                        charged[name] += cost
            for name, (_, limit) in zip(names, limits):
                usage = await client.get(f"{urls[1]}/v1/keys/{name}/shared", headers=AUTH)
                assert usage.json()["used"] == charged[name] <= limit, (name, limits, outcomes)

    asyncio.run(main())


async def put_on(client: httpx.AsyncClient, url: str, name: str, **body: Any) -> None:
    response = await client.put(f"{url}/v1/policies/{name}", json=body, headers=AUTH)
    assert response.status_code == 200, response.text
