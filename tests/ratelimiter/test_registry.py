"""Node registry: heartbeats in Redis, states from Redis time, SIGKILLed nodes turn stale then down."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis

from nodes import AUTH, TOKEN, NodeGroup, in_process_node, raw_request
from ratelimiter_service.registry import HeartbeatReport, NodeRegistry, node_state, registry_key

pytestmark = pytest.mark.redis


@given(
    st.integers(min_value=0, max_value=10**9),
    st.integers(min_value=0, max_value=10**6),
    st.integers(min_value=1, max_value=10**6),
    st.integers(min_value=1, max_value=10**6),
)
def test_state_only_worsens_with_age(age: int, more: int, stale: int, extra: int) -> None:
    down = stale + extra
    order = {"up": 0, "stale": 1, "down": 2}
    state = node_state(age, stale_after_ms=stale, down_after_ms=down)
    older = node_state(age + more, stale_after_ms=stale, down_after_ms=down)
    assert order[older] >= order[state]
    assert state == ("up" if age < stale else "stale" if age < down else "down")


def report(node_id: str, instance: str, decisions: int = 0, failures: int = 0, version: int = 0) -> HeartbeatReport:
    return HeartbeatReport(node_id, instance, f"http://{node_id}", version, decisions, failures)


def test_heartbeats_accumulate_per_instance_and_states_use_redis_time(redis_url: str) -> None:
    async def main() -> None:
        client = Redis.from_url(redis_url)
        registry = NodeRegistry(
            client, prefix="rl", stale_after_ms=300, down_after_ms=900, ttl_s=3600, timeout_s=1.0
        )
        try:
            first = await registry.heartbeat(report("a", "boot1", decisions=3, failures=1), timeout_s=1)
            await registry.heartbeat(report("a", "boot1", decisions=2, failures=0, version=4), timeout_s=1)
            [a] = await registry.nodes()
            assert (a.decisions, a.failure_mode_decisions, a.policy_version) == (5, 1, 4)
            assert a.started_at == first and a.state == "up" and a.address == "http://a"

            # Two workers of one node share the instance id: their deltas add up.
            await registry.heartbeat(report("a", "boot1", decisions=10), timeout_s=1)
            assert (await registry.nodes())[0].decisions == 15

            # A restarted node (new instance) starts over.
            await asyncio.sleep(0.002)
            await registry.heartbeat(report("a", "boot2", decisions=1), timeout_s=1)
            [a] = await registry.nodes()
            assert a.decisions == 1 and a.started_at > first

            # States come from Redis TIME: age records by rewriting last_heartbeat in Redis.
            seconds, micros = await client.time()
            now = seconds * 1000 + micros // 1000
            for node_id, age in (("stale-one", 400), ("down-one", 5_000)):
                record = {
                    "id": node_id, "instance": "x", "address": "", "started_at": now - age,
                    "last_heartbeat": now - age, "policy_version": 0, "decisions": 0, "failure_mode_decisions": 0,
                }
                await client.hset(registry_key("rl"), node_id, json.dumps(record))
            states = {n.id: n.state for n in await registry.nodes()}
            assert states == {"a": "up", "stale-one": "stale", "down-one": "down"}
            assert 0 < await client.pttl(registry_key("rl")) <= 3_600_000

            assert await registry.remove("down-one") is True
            assert await registry.remove("down-one") is False
            assert [n.id for n in await registry.nodes()] == ["a", "stale-one"]
        finally:
            await client.aclose()

    asyncio.run(main())


def poll_states(url: str, node_id: str, until: str, timeout_s: float) -> list[str]:
    """States of `node_id` seen in `url`'s /v1/nodes until it shows `until` (bounded)."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=2) as client:
        while time.monotonic() < deadline:
            nodes = {n["id"]: n for n in client.get(url + "/v1/nodes", headers=AUTH).json()["nodes"]}
            state = nodes[node_id]["state"] if node_id in nodes else "absent"
            if not seen or seen[-1] != state:
                seen.append(state)
            if state == until:
                return seen
            time.sleep(0.02)
    raise AssertionError(f"{node_id} never became {until!r}; states seen: {seen}")


@pytest.mark.slow
def test_sigkilled_node_turns_stale_then_down_and_can_be_removed(redis_url: str) -> None:
    env = {
        "RATELIMITER_TOKEN": TOKEN,
        "RATELIMITER_HEARTBEAT_INTERVAL_MS": "100",
        "RATELIMITER_STALE_AFTER_MS": "300",
        "RATELIMITER_DOWN_AFTER_MS": "900",
    }
    with NodeGroup(redis_url, count=2, env=env, id_prefix="reg") as nodes:
        watcher, victim = nodes[0], nodes[1]
        assert poll_states(watcher.url, "reg-1", "up", 10)[-1] == "up"
        nodes[1].kill()
        seen = poll_states(watcher.url, "reg-1", "down", 10)
        assert seen[-2:] == ["stale", "down"], seen
        listing = httpx.get(watcher.url + "/v1/nodes", headers=AUTH).json()["nodes"]
        assert {n["id"]: n["state"] for n in listing} == {"reg-0": "up", "reg-1": "down"}
        assert victim.url in {n["address"] for n in listing}

        removed = httpx.delete(watcher.url + "/v1/nodes/reg-1", headers=AUTH)
        assert removed.status_code == 200 and removed.json() == {"id": "reg-1", "removed": True}
        assert httpx.delete(watcher.url + "/v1/nodes/reg-1", headers=AUTH).status_code == 404
        # A live node removed by mistake registers again with its next heartbeat.
        assert httpx.delete(watcher.url + "/v1/nodes/reg-0", headers=AUTH).status_code == 200
        assert poll_states(watcher.url, "reg-0", "up", 5)[-1] == "up"


def test_registry_and_policy_keys_never_show_up_as_limiter_keys(redis_url: str) -> None:
    """`/v1/keys` scans the shared prefix: only limiter state may be listed."""

    async def main() -> None:
        async with in_process_node(redis_url, heartbeat_interval_ms=20) as (_, client):
            await client.put("/v1/policies/p", json={"limit": 5, "window_ms": 60_000}, headers=AUTH)
            await client.post("/v1/check", json={"policy": "p", "key": "reg}:nodes"})
            raw = redis.Redis.from_url(redis_url)
            try:
                async with asyncio.timeout(5):
                    while not raw.exists(registry_key("rl")):
                        await asyncio.sleep(0.01)
                assert len(raw.keys("rl:*")) >= 4  # registry, policy data and version, limiter state
            finally:
                raw.close()
            listed = (await client.get("/v1/keys", headers=AUTH)).json()["keys"]
            assert [(k["policy"], k["key"], k["used"]) for k in listed] == [("p", "reg}:nodes", 1)]

    asyncio.run(main())


@pytest.mark.slow
def test_worker_processes_of_one_node_register_as_one_node(redis_url: str) -> None:
    env = {"RATELIMITER_TOKEN": TOKEN, "RATELIMITER_WORKERS": "2", "RATELIMITER_HEARTBEAT_INTERVAL_MS": "100"}
    with NodeGroup(redis_url, count=1, env=env, id_prefix="multi") as nodes:
        url = nodes[0].url

        async def main() -> list[dict[str, object]]:
            # Separate connections, so the kernel spreads them over both workers.
            await asyncio.gather(*(raw_request(url, "POST", "/v1/check", {"key": f"k{i}"}) for i in range(60)))
            async with asyncio.timeout(10):
                while True:
                    listing = (await raw_request(url, "GET", "/v1/nodes", headers=AUTH)).json()["nodes"]
                    if listing and listing[0]["decisions"] == 60:
                        return listing  # type: ignore[no-any-return]
                    await asyncio.sleep(0.05)

        listing = asyncio.run(main())
        assert [n["id"] for n in listing] == ["multi-0"] and listing[0]["state"] == "up"
