"""The whole node against a real 3-master Redis Cluster (`redis+cluster://` URL)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio.cluster import RedisCluster

from cluster import LocalCluster, redis_cluster  # noqa: F401  (fixture)
from nodes import AUTH, in_process_node

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def test_node_serves_decisions_policies_keys_and_registry_on_a_cluster(redis_cluster: LocalCluster) -> None:
    redis_cluster.flush()
    url = "redis+cluster://" + ",".join(f"127.0.0.1:{s.port}" for s in redis_cluster.servers)

    async def main() -> None:
        async with in_process_node(url, heartbeat_interval_ms=50) as (app, client):
            assert isinstance(app.state.node.client, RedisCluster)
            assert (await client.get("/ready")).status_code == 200
            put = await client.put("/v1/policies/c", json={"limit": 2, "window_ms": 60_000}, headers=AUTH)
            assert put.status_code == 200
            keys = [f"user:{i}" for i in range(12)]  # spread over the masters' slots
            statuses: dict[str, list[int]] = {}
            for key in keys:
                statuses[key] = [
                    (await client.post("/v1/check", json={"policy": "c", "key": key})).status_code for _ in range(3)
                ]
            assert all(codes == [200, 200, 429] for codes in statuses.values())

            batch = await client.post("/v1/check/batch", json={"checks": [{"policy": "c", "key": k} for k in keys]})
            assert [r["allowed"] for r in batch.json()["results"]] == [False] * len(keys)

            listed = (await client.get("/v1/keys", headers=AUTH)).json()["keys"]
            assert sorted(k["key"] for k in listed) == sorted(keys)

            nodes: list[dict[str, Any]] = []
            async with asyncio.timeout(5):
                while not nodes:
                    nodes = (await client.get("/v1/nodes", headers=AUTH)).json()["nodes"]
                    await asyncio.sleep(0.02)
            assert nodes[0]["state"] == "up"

    asyncio.run(main())
